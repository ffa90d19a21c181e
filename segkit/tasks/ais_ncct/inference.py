"""Sliding-window inference of an AISCT-SAM network over a two-channel volume, as nnU-Net predicts.

The network sees (B, 2, D, S, S) patches with axes (S-I, R-L, A-P). Upstream predicts with nnU-Net's
predictor, so segkit follows its rules (mirroring left out: 8 passes per window): a volume smaller
than a patch is padded with zeros on both sides, windows overlap by at least half a patch and are
spread evenly, each window's logits are weighted by a Gaussian centred on it (sigma 1/8 of the
window) and averaged, and the export resamples the averaged logits, not probabilities, before the
softmax. With two classes the softmax needs only the lesion logit minus the background logit (the
margin), so that is the one array accumulated.
"""

from __future__ import annotations

import numpy as np


def window_starts(size: int, patch: int) -> list[int]:
    """nnU-Net's tile positions at step 0.5: the fewest windows that overlap by at least half a patch,
    spread evenly from 0 to size - patch."""
    if size <= patch:
        return [0]
    count = int(np.ceil((size - patch) / (patch * 0.5))) + 1
    step = (size - patch) / (count - 1)
    return [int(np.round(step * i)) for i in range(count)]


def importance_map(shape) -> np.ndarray:
    """nnU-Net's Gaussian weight of a window's voxels (sigma 1/8 of its size, peak at its centre): a
    voxel near the centre, where the network saw most context, counts more than one at the edge."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros(shape, dtype=np.float64)
    delta[tuple(n // 2 for n in shape)] = 1.0
    weights = gaussian_filter(delta, [n / 8 for n in shape], 0, mode="constant", cval=0.0)
    weights /= weights.max()
    weights[weights == 0] = weights[weights > 0].min()  # every voxel of a window counts a little
    return weights.astype(np.float32)


def centred_padding(shape, target) -> list[tuple[int, int]]:
    """(before, after) per axis up to `target`, the odd voxel after (nnU-Net's pad_nd_image)."""
    return [(max(0, t - n) // 2, max(0, t - n) - max(0, t - n) // 2) for n, t in zip(shape, target)]


def lesion_margin(net, channels: np.ndarray, slice_size: int, depth: int, device: str = "cpu", progress=None) -> np.ndarray:
    """channels (2, X, Y, Z) -> the Gaussian-weighted mean of lesion logit - background logit (X, Y, Z)."""
    import torch

    volume = np.transpose(channels, (0, 3, 1, 2))  # (C, Z, X, Y)
    target = (depth, slice_size, slice_size)
    pads = centred_padding(volume.shape[1:], target)
    # np.pad copies even when nothing is padded: a volume at least one patch large is used as it is
    padded = np.pad(volume, [(0, 0)] + pads) if any(sum(p) for p in pads) else volume
    weights = importance_map(target)
    total = np.zeros(padded.shape[1:], dtype=np.float32)
    weight_sum = np.zeros(padded.shape[1:], dtype=np.float32)
    windows = [(z, x, y) for z in window_starts(padded.shape[1], depth)
               for x in window_starts(padded.shape[2], slice_size) for y in window_starts(padded.shape[3], slice_size)]
    for done, (z, x, y) in enumerate(windows, start=1):
        region = (slice(z, z + depth), slice(x, x + slice_size), slice(y, y + slice_size))
        patch = np.ascontiguousarray(padded[(slice(None), *region)][None])
        with torch.no_grad():
            logits = net(torch.from_numpy(patch).to(device)).float()
            margin = (logits[0, 1] - logits[0, 0]).cpu().numpy()
        total[region] += margin * weights
        weight_sum[region] += weights
        if progress is not None:
            progress(done, len(windows))
    mean = np.divide(total, weight_sum, out=total)
    inside = tuple(slice(before, before + n) for (before, _), n in zip(pads, volume.shape[1:]))
    return np.transpose(mean[inside], (1, 2, 0))


def lesion_probability(net, case, card: dict, device: str = "cpu", progress=None) -> np.ndarray:
    """A preprocessed case's lesion probability on its own grid, the way nnU-Net predicts (shared by
    `segment` and training's validation): the brain's box of both channels, normalised with the
    package's CT statistics and resampled to the model's spacing, the sliding window, the logit
    margin resampled back onto the box, its softmax there, and 0 outside the box."""
    from scipy.special import expit

    from segkit.tasks.ais_ncct.intensity import resample_to_shape
    from segkit.tasks.ais_ncct.pipeline import model_channels, nonzero_box

    target = card.get("spacing_mm")
    box = nonzero_box(case)
    channels = model_channels(case, box, target, card["normalisation"])
    network = card["network"]
    margin = lesion_margin(net, channels, int(network["slice_size"]), int(network["depth"]), device, progress)
    if target is not None:
        box_shape = tuple(s.stop - s.start for s in box)
        margin = resample_to_shape(margin, box_shape, target, case.spacing, order=1)
    whole = np.zeros(case.brain.shape, dtype=np.float32)
    whole[box] = expit(margin)  # the two-class softmax
    return whole
