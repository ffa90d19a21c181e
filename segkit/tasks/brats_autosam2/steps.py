"""One training step's parts and the validation of brats_autosam2 (see train.py for the recipe)."""

from __future__ import annotations

import numpy as np


def crop(volume: np.ndarray, labels: np.ndarray, size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A random size^3 crop (zero-padded first where an axis is shorter)."""
    pads = [(0, max(0, size - n)) for n in labels.shape]
    volume = np.pad(volume, [(0, 0), *pads])
    labels = np.pad(labels, pads)
    starts = [int(rng.integers(0, n - size + 1)) for n in labels.shape]
    window = tuple(slice(s, s + size) for s in starts)
    return volume[(slice(None), *window)], labels[window]


def augment(volume: np.ndarray, labels: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    for axis in range(3):
        if rng.random() < 0.5:
            volume, labels = np.flip(volume, axis + 1), np.flip(labels, axis)
    if rng.random() < 0.5:
        inside = volume != 0
        scale = rng.uniform(0.9, 1.1, (4, 1, 1, 1))
        shift = rng.uniform(-0.1, 0.1, (4, 1, 1, 1))
        volume = np.where(inside, volume * scale + shift, 0.0)
    return np.ascontiguousarray(volume, dtype=np.float32), np.ascontiguousarray(labels)


def region_dice(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """BraTS WT/TC/ET Dice (both empty: 1)."""
    from segkit.metrics.regions import BRATS_REGIONS

    scores = {}
    for region, values in BRATS_REGIONS.items():
        p, t = np.isin(prediction, values), np.isin(truth, values)
        total = int(p.sum()) + int(t.sum())
        scores[region] = 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total
    return scores


def validate(model, cases, settings, device: str) -> dict:
    from segkit.tasks.brats_autosam2.hybrid import model_to_ras, predict_volume

    per_case = {}
    for name, volume, labels in cases:
        prediction, _ = predict_volume(model, model_to_ras(volume), settings, device)
        per_case[name] = region_dice(model_to_ras(prediction), labels)
    mean = {r: float(np.mean([c[r] for c in per_case.values()])) for r in ("WT", "TC", "ET")}
    return {"dice": mean, "score": float(np.mean(list(mean.values()))), "per_case": per_case}
