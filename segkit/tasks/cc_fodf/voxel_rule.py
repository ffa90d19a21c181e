"""The trivial baseline every cc_fodf accuracy claim stands beside: a rule on each voxel's own peaks.

A voxel is called corpus callosum when its first peak is mostly left-right (|x| >= cos_min * |v|)
and strong (|v| >= strength * the 99th percentile of first-peak amplitudes in that subject). The
two thresholds are tuned on training subjects (the best mean Dice over a grid), so the baseline is
as good as such a rule can be on the data the network also saw. World-frame peaks: x is left-right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COS_GRID = tuple(np.round(np.arange(0.50, 0.991, 0.05), 2))
STRENGTH_GRID = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2))


@dataclass(frozen=True)
class VoxelRule:
    cos_min: float
    strength: float
    train_dice: float | None = None

    def mask(self, peaks: np.ndarray) -> np.ndarray:
        left_right, amplitude = _first_peak(peaks)
        return (left_right >= self.cos_min * amplitude) & (amplitude >= self.strength * _reference(amplitude))


def _first_peak(peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first = np.asarray(peaks, dtype=np.float32)[..., :3]
    return np.abs(first[..., 0]), np.linalg.norm(first, axis=-1)


def _reference(amplitude: np.ndarray) -> float:
    present = amplitude[amplitude > 0]
    return float(np.percentile(present, 99)) if present.size else 1.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / total if total else 1.0


def tune_voxel_rule(subjects) -> VoxelRule:
    """The (cos_min, strength) of the grid with the best mean Dice over (peaks, mask) pairs."""
    prepared = []
    for peaks, mask in subjects:
        left_right, amplitude = _first_peak(peaks)
        prepared.append((left_right / np.maximum(amplitude, 1e-12), amplitude / _reference(amplitude), mask > 0))
    best = (-1.0, 0.0, 0.0)
    for cos_min in COS_GRID:
        for strength in STRENGTH_GRID:
            score = float(np.mean([dice((c >= cos_min) & (s >= strength), m) for c, s, m in prepared]))
            best = max(best, (score, float(cos_min), float(strength)))
    return VoxelRule(cos_min=best[1], strength=best[2], train_dice=best[0])
