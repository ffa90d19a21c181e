"""Voxel overlap between a reference and a predicted binary mask.

Conventions: both empty -> Dice = IoU = precision = recall = 1. Precision is None when only the
prediction is empty (nothing predicted), recall is None when only the reference is empty.
Volumes are in mL (voxel count x voxel volume in mm^3 / 1000); volume differences are pred - ref.
"""

from __future__ import annotations

import numpy as np


def overlap_metrics(ref: np.ndarray, pred: np.ndarray, voxel_volume_mm3: float) -> dict:
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    n_ref = int(np.count_nonzero(ref))
    n_pred = int(np.count_nonzero(pred))
    tp = _count_both(ref, pred)
    fp, fn = n_pred - tp, n_ref - tp
    ml = voxel_volume_mm3 / 1000.0
    both_empty = n_ref == 0 and n_pred == 0
    return {
        "dice": 1.0 if both_empty else 2.0 * tp / (n_ref + n_pred),
        "iou": 1.0 if both_empty else tp / (tp + fp + fn),
        "precision": 1.0 if both_empty else (tp / n_pred if n_pred else None),
        "recall": 1.0 if both_empty else (tp / n_ref if n_ref else None),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "ref_volume_ml": n_ref * ml,
        "pred_volume_ml": n_pred * ml,
        "volume_diff_ml": (n_pred - n_ref) * ml,
        "abs_volume_diff_ml": abs(n_pred - n_ref) * ml,
    }


def dice(ref: np.ndarray, pred: np.ndarray) -> float:
    """Dice of two binary masks, as overlap_metrics defines it (both empty -> 1); for training and selection."""
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    total = int(np.count_nonzero(ref)) + int(np.count_nonzero(pred))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(ref & pred)) / total


def _count_both(ref: np.ndarray, pred: np.ndarray, slab: int = 1 << 24) -> int:
    """Voxels set in both masks, counted a slab of rows at a time (no full-size temporary)."""
    if ref.ndim == 0 or ref.size <= slab:
        return int(np.count_nonzero(ref & pred))
    step = max(1, slab // max(1, ref[0].size))
    return sum(int(np.count_nonzero(ref[i:i + step] & pred[i:i + step])) for i in range(0, ref.shape[0], step))
