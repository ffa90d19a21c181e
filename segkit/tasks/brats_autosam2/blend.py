"""Class-wise blending of the UNet's probabilities with SAM's slice masks (METHODS.md, AutoSAM2).

On a SAM-processed slice with SAM foreground probability S:
    SAM's classes:  background 1 - S; tumour class c gets S * U_c / sum_k U_k over the tumour
                    classes k = 1..3 (an equal third where the UNet gives them no probability);
    blended:        background b * U_0 + (1 - b) * (1 - S); class c  t * U_c + (1 - t) * SAM_c;
                    then renormalised to sum 1 over the four classes.
Unprocessed slices between two processed ones take SAM's foreground interpolated linearly between
those two slices, split over the classes by that slice's own UNet (then the same blend); slices
outside the processed range keep the UNet.

Written in torch so training can pass gradients through it; works on (4, D, H, W) tensors.
"""

from __future__ import annotations

import torch

_EPS = 1e-6


def sam_class_maps(unet: torch.Tensor, sam: torch.Tensor) -> torch.Tensor:
    """(4, H, W) SAM class probabilities from the UNet's (4, H, W) and SAM's (H, W) foreground."""
    tumour = unet[1:]
    total = tumour.sum(dim=0, keepdim=True)
    share = torch.where(total > _EPS, tumour / total.clamp_min(_EPS), torch.full_like(tumour, 1.0 / 3.0))
    return torch.cat([(1 - sam)[None], sam[None] * share], dim=0)


def blend_slice(unet: torch.Tensor, sam_classes: torch.Tensor, bg_blend: float, tumor_blend: float) -> torch.Tensor:
    weights = torch.tensor([bg_blend, tumor_blend, tumor_blend, tumor_blend], dtype=unet.dtype, device=unet.device)
    weights = weights[:, None, None]
    mixed = weights * unet + (1 - weights) * sam_classes
    return mixed / mixed.sum(dim=0, keepdim=True).clamp_min(_EPS)


def blend_volume(unet: torch.Tensor, sam: dict[int, torch.Tensor], bg_blend: float = 0.5, tumor_blend: float = 0.5,
                 interpolate: bool = True) -> torch.Tensor:
    """(4, D, H, W) blended probabilities; `sam` maps processed slice index -> (H, W) foreground."""
    if not sam:
        return unet
    done = sorted(sam)
    slices = []
    for z in range(unet.shape[1]):
        foreground = sam.get(z) if not interpolate else sam_foreground_at(z, done, sam)
        if foreground is None:
            slices.append(unet[:, z])
        else:
            slices.append(blend_slice(unet[:, z], sam_class_maps(unet[:, z], foreground), bg_blend, tumor_blend))
    return torch.stack(slices, dim=1)


def sam_foreground_at(z: int, done: list[int], sam: dict) -> torch.Tensor | None:
    """SAM's foreground at slice z: its own, or linear between the processed slices around z."""
    if z in sam:
        return sam[z]
    below = [d for d in done if d < z]
    above = [d for d in done if d > z]
    if not below or not above:
        return None
    lo, hi = below[-1], above[0]
    w = (z - lo) / (hi - lo)
    return (1 - w) * sam[lo] + w * sam[hi]
