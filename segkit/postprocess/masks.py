"""Cleanup of one binary mask: --largest, --fill-holes, --remove-small 5mm3|5vox."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from segkit.errors import SegkitError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mm3|vox)\s*$", re.IGNORECASE)
SLAB_VOXELS = 1 << 22  # np.bincount converts its input to intp (8 bytes a voxel): count a slab at a time


def bincount_by_slab(values: np.ndarray, minlength: int) -> np.ndarray:
    """np.bincount of an array's values (any shape), a slab at a time: the intp copy is of one slab
    (32 MB), not of the whole array (1.7 GB for int32 component labels of a 512x512x800 volume)."""
    flat = np.asarray(values).ravel(order="K")  # NIfTI arrays are Fortran-ordered: no C-order copy
    total = np.zeros(minlength, dtype=np.int64)
    for start in range(0, flat.size, SLAB_VOXELS):
        counts = np.bincount(flat[start : start + SLAB_VOXELS], minlength=minlength)
        if counts.size > total.size:
            total = np.concatenate([total, np.zeros(counts.size - total.size, dtype=np.int64)])
        total[: counts.size] += counts
    return total


@dataclass(frozen=True)
class MinSize:
    amount: float
    unit: str  # "mm3" or "vox"

    def voxels(self, voxel_volume_mm3: float) -> float:
        return self.amount if self.unit == "vox" else self.amount / voxel_volume_mm3


def parse_min_size(text: str | None) -> MinSize | None:
    if text is None or str(text).strip() == "":
        return None
    match = _SIZE.match(str(text))
    if not match:
        raise SegkitError(f"--remove-small {text!r}: give a size with its unit, e.g. 5mm3 or 5vox")
    return MinSize(float(match.group(1)), match.group(2).lower())


def postprocess_record(*, largest: bool, fill_holes: bool, remove_small: MinSize | None,
                       voxel_volume_mm3: float) -> dict:
    """The post-processing a mask received, as sidecar fields (every option, set or not, and the order)."""
    small = None
    if remove_small is not None:
        small = {"amount": remove_small.amount, "unit": remove_small.unit,
                 "voxels": round(remove_small.voxels(voxel_volume_mm3), 6)}
    return {"largest": bool(largest), "fill_holes": bool(fill_holes), "remove_small": small,
            "order": ["remove_small", "largest", "fill_holes"], "objects": "26-connected (8 in 2D)"}


def clean_mask(
    mask: np.ndarray,
    *,
    largest: bool = False,
    fill_holes: bool = False,
    remove_small: MinSize | None = None,
    voxel_volume_mm3: float = 1.0,
) -> np.ndarray:
    """Apply the requested steps in a fixed order: drop small objects, keep the largest, fill holes.

    The mask is handed over: the result may be a uint8 view of it (no copy of a full-size volume).
    Each step runs inside the mask's bounding box, which holds every object: the components are the
    same, and so are the holes (background that touches the box's faces touches the background
    around the box, which reaches the image's border), without full-size label arrays."""
    mask = np.asarray(mask, dtype=bool)
    if remove_small is not None or largest:
        mask = kept_components(mask, lambda sizes: _kept(sizes, largest, remove_small, voxel_volume_mm3))
    if fill_holes:
        mask = _holes_filled(mask)
    return mask.view(np.uint8)


def kept_components(mask: np.ndarray, keep) -> np.ndarray:
    """The 26-connected components (in 3D) of a bool `mask` that `keep(sizes)` keeps: `sizes` holds
    the voxels of components 1..n, `keep` returns one bool per component. Labelled inside the mask's
    bounding box, where they all lie: no full-size int32 labels beside the mask."""
    from scipy import ndimage

    from segkit.io.grid import mask_box

    box = mask_box(mask)
    if box is None:
        return mask
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    components, count = ndimage.label(mask[box], structure=structure)
    lookup = np.concatenate([[False], keep(bincount_by_slab(components, count + 1)[1:])])
    if lookup[1:].all():  # every component stays (one object, the usual case): no new volume
        return mask
    kept = np.zeros_like(mask)
    kept[box] = lookup[components]  # a lookup: no temporaries of np.isin's
    return kept


def _kept(sizes: np.ndarray, largest: bool, remove_small: MinSize | None, voxel_volume_mm3: float) -> np.ndarray:
    keep = np.ones(sizes.size, dtype=bool)
    if remove_small is not None:
        keep &= sizes >= remove_small.voxels(voxel_volume_mm3)
    if largest and keep.any():
        best = int(np.argmax(np.where(keep, sizes, -1)))
        keep[:] = False
        keep[best] = True
    return keep


def _holes_filled(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    from segkit.io.grid import mask_box

    box = mask_box(mask)
    if box is None:
        return mask
    filled = np.zeros_like(mask)
    filled[box] = ndimage.binary_fill_holes(mask[box])
    return filled
