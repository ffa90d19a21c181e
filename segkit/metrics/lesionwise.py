"""Lesion-wise detection: 26-connected components (8 in 2D), one overlapping voxel is a hit.

ISLES'22 lesion F1 = tp / (tp + (fp + fn) / 2): tp counts reference lesions touched by the
prediction, fn reference lesions it misses, fp predicted lesions that touch no reference voxel.
No lesion on either side gives F1 = 1 (the same convention as Dice for two empty masks).
"""

from __future__ import annotations

import numpy as np


def connected_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Components with full connectivity (26 in 3D, 8 in 2D): labels 1..n and n."""
    from scipy import ndimage

    structure = np.ones((3,) * mask.ndim, dtype=bool)
    labelled, count = ndimage.label(np.asarray(mask, dtype=bool), structure=structure)
    return labelled, int(count)


def _component_table(labelled: np.ndarray, count: int, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per component (1..count): voxel count and how many of its voxels lie in `other`."""
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)[1:]
    overlaps = np.bincount(labelled[other].ravel(), minlength=count + 1)[1:]
    return sizes, overlaps


def lesion_detection(ref: np.ndarray, pred: np.ndarray, voxel_volume_mm3: float):
    """Summary dict and a per-lesion table (list of dicts) for one binary pair."""
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    ref_labels, n_ref = connected_lesions(ref)
    pred_labels, n_pred = connected_lesions(pred)
    ref_sizes, ref_hits = _component_table(ref_labels, n_ref, pred)
    pred_sizes, pred_hits = _component_table(pred_labels, n_pred, ref)
    tp = int(np.count_nonzero(ref_hits > 0))
    fn = n_ref - tp
    fp = int(np.count_nonzero(pred_hits == 0))
    f1 = 1.0 if tp + fp + fn == 0 else tp / (tp + (fp + fn) / 2.0)
    summary = {
        "lesion_f1": f1,
        "lesion_tp": tp,
        "lesion_fp": fp,
        "lesion_fn": fn,
        "n_ref_lesions": n_ref,
        "n_pred_lesions": n_pred,
        "lesion_count_abs_diff": abs(n_pred - n_ref),
    }
    ml = voxel_volume_mm3 / 1000.0
    table = [
        {"source": "ref", "lesion": i + 1, "volume_ml": float(ref_sizes[i] * ml),
         "overlap_voxels": int(ref_hits[i]), "detected": bool(ref_hits[i] > 0)}
        for i in range(n_ref)
    ] + [
        {"source": "pred", "lesion": i + 1, "volume_ml": float(pred_sizes[i] * ml),
         "overlap_voxels": int(pred_hits[i]), "detected": bool(pred_hits[i] > 0)}
        for i in range(n_pred)
    ]
    return summary, table
