"""Pseudo-label selection (METHODS: nnSAM2).

- Before the first round: keep the frames whose summed quality is in the dataset's top decile
  (segkit: quality = predicted IoU x agreement with the aligned support, 0 on failed slices,
  signal.py, since the IoU head alone rates misplaced masks high; nnSAM2 ranks by IoU). Slices not kept become the IGNORE label, so nnU-Net leaves them out of the loss instead
  of learning them as background: an unselected slice still holds muscle.
- Between rounds: keep the cases that are smooth (every consecutive-slice area ratio <= 1.25 for
  each class) and agree with the previous stage (mean DSC over classes > 0.95), the top
  max(2, 20%) of the dataset by agreement.
"""

from __future__ import annotations

import math

import numpy as np

from segkit.tasks.lpm_nnsam2.labels import lpm_labels

TOP_FRACTION = 0.10  # top decile of summed IoU
MAX_AREA_RATIO = 1.25
MIN_AGREEMENT = 0.95


def iou_threshold(all_iou_sums: np.ndarray) -> float:
    """The summed score (quality) at the start of the dataset's top decile."""
    return float(np.quantile(np.asarray(all_iou_sums, dtype=np.float64), 1.0 - TOP_FRACTION))


def max_area_ratio(labels: np.ndarray, slice_axis: int = 2, values=None) -> float:
    """Largest ratio between the areas of consecutive labelled slices, over classes (1 = smooth)."""
    values = values or lpm_labels()
    worst = 1.0
    for value in values:
        areas = np.moveaxis(labels == value, slice_axis, 0).reshape(labels.shape[slice_axis], -1).sum(axis=1)
        areas = areas[areas > 0]
        if areas.size >= 2:
            ratios = np.maximum(areas[1:], areas[:-1]) / np.minimum(areas[1:], areas[:-1])
            worst = max(worst, float(ratios.max()))
    return worst


def mean_dice(a: np.ndarray, b: np.ndarray, values=None) -> float:
    from segkit.metrics.overlap import dice

    values = values or lpm_labels()
    return float(np.mean([dice(a == value, b == value) for value in values]))


def select_cases(rows: list[dict], usable: set | None = None) -> list[dict]:
    """rows: {case, max_area_ratio, dice_vs_previous}. Adds smooth/agrees/kept/reason; returns rows.

    Cases outside `usable` (e.g. a prediction missing a side) are never kept."""
    n_keep = max(2, math.ceil(0.2 * len(rows)))
    for row in rows:
        row["smooth"] = row["max_area_ratio"] <= MAX_AREA_RATIO
        row["agrees"] = row["dice_vs_previous"] > MIN_AGREEMENT
    ranked = sorted(rows, key=lambda r: (not (r["smooth"] and r["agrees"]), -r["dice_vs_previous"]))
    ranked = [r for r in ranked if usable is None or r["case"] in usable]
    for row in rows:
        row["kept"], row["reason"] = False, "a side is missing from the prediction"
    for rank, row in enumerate(ranked):
        row["kept"] = rank < n_keep
        passing = row["smooth"] and row["agrees"]
        row["reason"] = ("passes" if passing else "best remaining (too few pass)") if row["kept"] else (
            "not in top max(2, 20%)" if passing else "fails smoothness/agreement")
    return rows
