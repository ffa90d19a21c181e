"""Voxel counts and volumes per label: volume = count x |det(affine[:3, :3])|, in mL."""

from __future__ import annotations

import numpy as np


def label_volumes(label_map: np.ndarray, voxel_volume_mm3: float, labels) -> list[dict]:
    """One dict per label; an absent label has volume None and status 'empty'."""
    # order="K": NIfTI arrays are Fortran-ordered, and a C-order ravel would copy them first.
    flat = label_map.ravel(order="K")
    counts = _counts(flat, max(labels) + 1)
    rows = []
    for label in labels:
        count = int(counts[label])
        rows.append({
            "label": int(label),
            "status": "ok" if count else "empty",
            "voxel_count": count,
            "volume_ml": count * voxel_volume_mm3 / 1000.0 if count else None,
        })
    return rows


SLAB_VOXELS = 1 << 22  # bincount converts its input to intp: 8 bytes a voxel, so count a slab at a time


def _counts(flat: np.ndarray, minlength: int) -> np.ndarray:
    """np.bincount over slabs: the intp copy is of one slab (32 MB), not of the whole map
    (1.9 GB for a uint8 512 x 512 x 800 map)."""
    total = np.zeros(minlength, dtype=np.int64)
    for start in range(0, flat.size, SLAB_VOXELS):
        counts = np.bincount(flat[start : start + SLAB_VOXELS], minlength=minlength)
        if counts.size > total.size:
            total = np.concatenate([total, np.zeros(counts.size - total.size, dtype=np.int64)])
        total[: counts.size] += counts
    return total
