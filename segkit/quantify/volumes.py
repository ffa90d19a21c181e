"""Voxel counts and volumes per label: volume = count x |det(affine[:3, :3])|, in mL."""

from __future__ import annotations

import numpy as np

from segkit.postprocess.masks import bincount_by_slab


def label_volumes(label_map: np.ndarray, voxel_volume_mm3: float, labels) -> list[dict]:
    """One dict per label; an absent label has volume None and status 'empty'."""
    counts = bincount_by_slab(label_map, max(labels) + 1)
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
