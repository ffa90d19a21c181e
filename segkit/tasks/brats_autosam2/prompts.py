"""SAM prompts for one slice, made from the UNet's tumour probability there (METHODS.md, AutoSAM2).

Given P (H, W), the probability of any tumour class, and the tumour mask M = P > threshold:

positive points (n_positive, default 10), as (x = column, y = row):
    1. one per connected region of M (8-connected), largest region first (ties: lower label), at
       the region's most probable pixel (ties: first in row-major order), for at most
       `max_regions` regions;
    2. then diverse high-probability points: M's pixels by probability (descending, ties
       row-major), each taken if it is at least `min_distance` pixels (Euclidean) from every point
       taken so far; when none qualifies, the most probable pixel of M not yet taken.
    Never more points than M has pixels.
negative points (n_negative, default 3): from the ring dilate(M, outer) minus dilate(M, inner)
    (square structuring elements, clipped to the slice), the ring pixel whose angle around M's
    centroid is closest to each of n_negative evenly spaced angles starting at 0 (atan2(row, col));
    ties go to the lower probability, then row-major order. Duplicates are dropped.
box (x0, y0, x1, y1): M's bounding box, widened on each side by max(min_pad, ceil(fraction * its
    side)) along that axis, clipped to the slice.

An empty M gives no prompts (None): that slice is left to the UNet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PromptSettings:
    n_positive: int = 10
    n_negative: int = 3
    threshold: float = 0.5
    max_regions: int = 3
    min_distance: float = 3.0
    ring_inner: int = 2
    ring_outer: int = 5
    min_pad: int = 5
    pad_fraction: float = 0.1


@dataclass(frozen=True)
class Prompts:
    points: np.ndarray  # (N, 2) float32, (x, y) pixel coordinates of the slice
    labels: np.ndarray  # (N,) int64: 1 positive, 0 negative
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1)

    @property
    def n_positive(self) -> int:
        return int((self.labels == 1).sum())


def make_prompts(probability: np.ndarray, settings: PromptSettings = PromptSettings()) -> Prompts | None:
    mask = probability > settings.threshold
    if not mask.any():
        return None
    positive = positive_points(probability, mask, settings)
    negative = negative_points(probability, mask, settings)
    points = np.array(positive + negative, dtype=np.float32).reshape(-1, 2)[:, ::-1].copy()  # (row, col) -> (x, y)
    labels = np.array([1] * len(positive) + [0] * len(negative), dtype=np.int64)
    return Prompts(points, labels, padded_box(mask, settings))


def positive_points(probability, mask, settings: PromptSettings) -> list[tuple[int, int]]:
    """(row, col) points: region maxima first, then diverse high-probability pixels."""
    from scipy import ndimage

    regions, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(regions.ravel(), minlength=count + 1)[1:]
    by_size = sorted(range(1, count + 1), key=lambda r: (-sizes[r - 1], r))
    chosen: list[tuple[int, int]] = []
    for region in by_size[: settings.max_regions]:
        if len(chosen) >= settings.n_positive:
            break
        rows, cols = np.nonzero(regions == region)
        best = int(np.argmax(probability[rows, cols]))  # first maximum in row-major order
        chosen.append((int(rows[best]), int(cols[best])))
    rows, cols = np.nonzero(mask)
    order = np.lexsort((cols, rows, -probability[rows, cols]))
    candidates = [(int(rows[i]), int(cols[i])) for i in order]
    while len(chosen) < min(settings.n_positive, len(candidates)):
        taken = set(chosen)
        spread = [c for c in candidates if c not in taken and _far(c, chosen, settings.min_distance)]
        chosen.append(spread[0] if spread else next(c for c in candidates if c not in taken))
    return chosen


def _far(point, chosen, distance: float) -> bool:
    return all(math.hypot(point[0] - r, point[1] - c) >= distance for r, c in chosen)


def negative_points(probability, mask, settings: PromptSettings) -> list[tuple[int, int]]:
    from scipy import ndimage

    if settings.n_negative <= 0:
        return []
    outer = ndimage.binary_dilation(mask, np.ones((3, 3), dtype=bool), iterations=settings.ring_outer)
    inner = ndimage.binary_dilation(mask, np.ones((3, 3), dtype=bool), iterations=settings.ring_inner)
    rows, cols = np.nonzero(outer & ~inner)
    if rows.size == 0:
        return []
    centre_r, centre_c = (float(v.mean()) for v in np.nonzero(mask))
    angles = np.arctan2(rows - centre_r, cols - centre_c)
    chosen: list[tuple[int, int]] = []
    for k in range(settings.n_negative):
        target = 2 * math.pi * k / settings.n_negative
        gap = np.abs((angles - target + math.pi) % (2 * math.pi) - math.pi)
        best = np.lexsort((cols, rows, probability[rows, cols], np.round(gap, 9)))[0]
        point = (int(rows[best]), int(cols[best]))
        if point not in chosen:
            chosen.append(point)
    return chosen


def padded_box(mask: np.ndarray, settings: PromptSettings) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
    pad_r = max(settings.min_pad, math.ceil(round(settings.pad_fraction * (r1 - r0 + 1), 9)))
    pad_c = max(settings.min_pad, math.ceil(round(settings.pad_fraction * (c1 - c0 + 1), 9)))
    height, width = mask.shape
    return (max(0, c0 - pad_c), max(0, r0 - pad_r), min(width - 1, c1 + pad_c), min(height - 1, r1 + pad_r))
