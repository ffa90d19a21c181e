"""Voxel counts and volumes per label: volume = count x |det(affine[:3, :3])|, in mL."""

from __future__ import annotations

import numpy as np


def label_volumes(label_map: np.ndarray, voxel_volume_mm3: float, labels) -> list[dict]:
    """One dict per label; an absent label has volume None and status 'empty'."""
    # order="K": NIfTI arrays are Fortran-ordered, and a C-order ravel would copy them first.
    flat = label_map.ravel(order="K")
    if not np.can_cast(flat.dtype, np.intp):
        flat = flat.astype(np.int64)
    counts = np.bincount(flat, minlength=max(labels) + 1)
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
