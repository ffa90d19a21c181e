"""Signal fat fraction inside a mask (a signal ratio F/(F+W), not a proton-density fat fraction).

From Dixon fat and water images: voxels where F+W exceeds a noise threshold are used; the
voxel-wise fraction F/(F+W) is clipped to [0, 1] and averaged (`ff_mean`), and the pooled ratio
sum(F)/sum(F+W) over the same voxels is reported too (`ff_pooled`). The default threshold is 5%
of the 99th percentile of F+W over the whole image, which drops background noise whose
fraction is meaningless.

From a fat-fraction map: its scale is detected from its maximum (<= 1: 0-1, <= 100: percent,
<= 1000: per mille), reported, and values are divided to 0-1 and clipped.
"""

from __future__ import annotations

import numpy as np

from segkit.errors import ImageError

FF_SCALES = (1.0, 100.0, 1000.0)


def default_noise_threshold(total: np.ndarray) -> float:
    return 0.05 * float(np.percentile(total, 99))


def fat_fraction_dixon(fat: np.ndarray, water: np.ndarray, mask: np.ndarray, noise_threshold=None) -> dict:
    fat = np.asarray(fat, dtype=np.float64)
    water = np.asarray(water, dtype=np.float64)
    total = fat + water
    threshold = default_noise_threshold(total) if noise_threshold is None else float(noise_threshold)
    used = mask & (total > threshold)
    n_used = int(np.count_nonzero(used))
    result = {"ff_source": "dixon", "ff_scale": None, "noise_threshold": threshold, "n_voxels_ff": n_used}
    if n_used == 0:
        return {**result, "ff_mean": None, "ff_pooled": None}
    f, t = fat[used], total[used]
    return {**result, "ff_mean": float(np.mean(np.clip(f / t, 0.0, 1.0))), "ff_pooled": float(f.sum() / t.sum())}


def detect_ff_scale(ff: np.ndarray, path="FF map") -> float:
    """1, 100 or 1000: the smallest full scale that holds the map's maximum."""
    top = float(np.max(ff))
    for scale in FF_SCALES:
        if top <= scale * 1.0001:  # a little slack for rounding in stored maps
            return scale
    raise ImageError(f"{path}: fat-fraction map maximum {top:g} is above 1000; expected a 0-1, 0-100 or 0-1000 map")


def fat_fraction_map(ff: np.ndarray, mask: np.ndarray, scale=None, path="FF map") -> dict:
    scale = detect_ff_scale(ff, path) if scale is None else float(scale)
    values = np.clip(np.asarray(ff, dtype=np.float64)[mask] / scale, 0.0, 1.0)
    result = {"ff_source": "ff_map", "ff_scale": f"0-{scale:g}", "noise_threshold": None, "n_voxels_ff": int(values.size)}
    if values.size == 0:
        return {**result, "ff_mean": None, "ff_pooled": None}
    return {**result, "ff_mean": float(values.mean()), "ff_pooled": None}
