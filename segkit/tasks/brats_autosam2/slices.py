"""Which axial slices the SAM stage refines (`--slice-percentage p`, `--slice-rule`).

n = max(1, floor(D * p)) slices of a depth-D volume; p = 0 means none (the UNet alone).

positional (the seed's rule, METHODS.md):
    n <= 5: slices at 0.5, 0.3, 0.7, 0.1, 0.9 of the depth, the first n of that list (centre first),
            index floor(D * f);
    n > 5:  floor(n / 2) slices evenly in [0.4, 0.6); floor(3n / 10) over [0.2, 0.4) and [0.6, 0.8)
            (the lower band gets the smaller half); the rest over [0, 0.2) and [0.8, 1.0) alike.
            'Evenly' in [a, b) with m slices: floor(D * (a + (b - a) * (k + 0.5) / m)), k = 0..m-1.
    Duplicates (possible when D is small) are dropped, so fewer than n slices may come back.

informative (segkit's, the default; the seed's README asks to prioritise informative slices):
    the n slices with the largest summed tumour probability (1 - P(background)) of the UNet;
    ties go to the lower index. Slices without tumour probability are never chosen: a volume with
    no tumour gets no SAM refinement.

Both return sorted, unique indices.
"""

from __future__ import annotations

import math

import numpy as np

RULES = ("informative", "positional")
_FEW_POSITIONS = (5, 3, 7, 1, 9)  # tenths of the depth: integer arithmetic keeps the floors exact


def slice_count(depth: int, percentage: float) -> int:
    if percentage <= 0 or depth <= 0:
        return 0
    return max(1, math.floor(depth * percentage + 1e-9))


def _even(depth: int, start: int, stop: int, m: int) -> list[int]:
    """m indices evenly in [start, stop) tenths of the depth: floor(D * (a + (b - a) * (k + 0.5) / m))."""
    return [depth * (2 * m * start + (stop - start) * (2 * k + 1)) // (20 * m) for k in range(m)]


def positional_slices(depth: int, percentage: float) -> list[int]:
    n = slice_count(depth, percentage)
    if n == 0:
        return []
    if n <= 5:
        chosen = [depth * f // 10 for f in _FEW_POSITIONS[:n]]
    else:
        centre = n // 2
        middle = (3 * n) // 10
        ends = n - centre - middle
        chosen = _even(depth, 4, 6, centre)
        chosen += _even(depth, 2, 4, middle // 2) + _even(depth, 6, 8, middle - middle // 2)
        chosen += _even(depth, 0, 2, ends // 2) + _even(depth, 8, 10, ends - ends // 2)
    return sorted({min(max(i, 0), depth - 1) for i in chosen})


def informative_slices(tumour_probability: np.ndarray, percentage: float) -> list[int]:
    """tumour_probability: (D, H, W); the n slices holding the most tumour probability."""
    depth = tumour_probability.shape[0]
    n = slice_count(depth, percentage)
    if n == 0:
        return []
    score = tumour_probability.reshape(depth, -1).sum(axis=1)
    order = np.lexsort((np.arange(depth), -score))  # by score descending, then index ascending
    return sorted(int(i) for i in order[:n] if score[i] > 0)


def select_slices(rule: str, tumour_probability: np.ndarray, percentage: float) -> list[int]:
    if rule == "positional":
        return positional_slices(tumour_probability.shape[0], percentage)
    if rule == "informative":
        return informative_slices(tumour_probability, percentage)
    raise ValueError(f"unknown slice rule {rule!r}; choose from {', '.join(RULES)}")
