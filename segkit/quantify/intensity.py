"""Intensity statistics inside a mask, in float64 (NIfTI scl_slope/scl_inter already applied).

std uses ddof=1 (the sample standard deviation, as SimpleITK's LabelStatistics sigma); the column
says so: `std_ddof1`. Percentiles interpolate linearly (numpy's default).
"""

from __future__ import annotations

import numpy as np

INTENSITY_COLUMNS = ("mean", "std_ddof1", "median", "p5", "p95", "min", "max", "n_voxels")


def erode_mask(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Peel `iterations` voxel layers (face connectivity), e.g. to keep CT partial volume out."""
    if iterations <= 0:
        return mask
    from scipy import ndimage

    return ndimage.binary_erosion(mask, iterations=iterations, border_value=0)


def intensity_stats(values: np.ndarray) -> dict:
    """Statistics of the selected voxel values; no values -> every statistic None, n_voxels 0."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return {**{name: None for name in INTENSITY_COLUMNS[:-1]}, "n_voxels": 0}
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    return {
        "mean": float(np.mean(values)),
        "std_ddof1": float(np.std(values, ddof=1)) if values.size > 1 else None,
        "median": float(median),
        "p5": float(p5),
        "p95": float(p95),
        "min": float(values.min()),
        "max": float(values.max()),
        "n_voxels": int(values.size),
    }


def masked_values(image: np.ndarray, mask: np.ndarray, erode: int = 0, window=None) -> np.ndarray:
    """Voxel values inside the (optionally eroded) mask, optionally kept to window=(lo, hi) inclusive."""
    values = image[erode_mask(mask, erode)].astype(np.float64, copy=False)
    if window is not None:
        lo, hi = window
        values = values[(values >= lo) & (values <= hi)]
    return values
