"""The failure signal: which slices of a few-shot result are wrong, without the truth.

The IoU head alone cannot tell: it reported 0.91 on slices whose Dice was 0 (issue 13), because
it judges whether a mask fits the prompt, not whether the prompt was in the right place. So each
slice and side is checked four ways, all recorded in the per-slice table:

- `iou`: the model's predicted IoU (below MIN_IOU: the model itself doubts the mask);
- `agree`: Dice against the registered support annotation on that slice (align.py); another
  subject's muscle, once aligned, overlaps the target's by far more than MIN_AGREEMENT, and a
  mask that landed on the wrong structure does not;
- `area_jump`: area ratio to the closer of its neighbours (above MAX_AREA_JUMP: an isolated
  blob or a collapse; the muscles change slowly along the spine);
- `centroid_jump_mm`: centroid distance to the closer of its neighbours, in mm.

A slice-side fails when its mask is empty or any check is out of bounds. `quality` = iou x agree
(0 where failed) ranks slices for round-1 pseudo-labels; failed slice-sides are removed from the
outputs, and a side that fails on every slice is reported, not written as a confident mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_IOU = 0.3  # the IoU head is a weak cue (0.91 on Dice-0 slices): only a very low value counts
MIN_AGREEMENT = 0.45
MAX_AREA_JUMP = 2.0
MAX_CENTROID_JUMP_MM = 10.0


@dataclass
class SliceChecks:
    iou: np.ndarray  # (n_slices, n_objects)
    agree: np.ndarray
    area_jump: np.ndarray
    centroid_jump_mm: np.ndarray
    failed: np.ndarray  # bool

    @property
    def quality(self) -> np.ndarray:
        return np.where(self.failed, 0.0, self.iou * self.agree)

    def sides_failing_everywhere(self) -> list[int]:
        """Indices of the objects that failed on every slice."""
        return [j for j in range(self.failed.shape[1]) if self.failed[:, j].all()]


def check_slices(labels: np.ndarray, scores: np.ndarray, reference: np.ndarray, pixel_mm: tuple[float, float],
                 object_ids) -> SliceChecks:
    """labels, reference: (n, H, W) label frames; scores (n, n_objects); pixel_mm: frame pixel size (rows, cols)."""
    n, n_obj = labels.shape[0], len(object_ids)
    agree, area, centroid = np.zeros((n, n_obj)), np.zeros((n, n_obj)), np.full((n, n_obj, 2), np.nan)
    for k in range(n):
        for j, obj in enumerate(object_ids):
            mask, ref = labels[k] == obj, reference[k] == obj
            total = int(mask.sum()) + int(ref.sum())
            agree[k, j] = 2.0 * int((mask & ref).sum()) / total if total else 1.0
            area[k, j] = mask.sum()
            if mask.any():
                centroid[k, j] = np.argwhere(mask).mean(axis=0) * np.asarray(pixel_mm)
    area_jump, centroid_jump = _neighbour_jumps(area, centroid)
    iou = np.asarray(scores, dtype=np.float64)
    failed = (area == 0) | (iou < MIN_IOU) | (agree < MIN_AGREEMENT) | (area_jump > MAX_AREA_JUMP)
    failed |= centroid_jump > MAX_CENTROID_JUMP_MM
    return SliceChecks(iou, agree, area_jump, centroid_jump, failed)


def _neighbour_jumps(area: np.ndarray, centroid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slice and object: the smallest area ratio and centroid distance to a neighbour with a mask
    (1 and 0 where no neighbour has one: nothing to compare with)."""
    n, n_obj = area.shape
    area_jump, centroid_jump = np.ones((n, n_obj)), np.zeros((n, n_obj))
    for k in range(n):
        for j in range(n_obj):
            neighbours = [m for m in (k - 1, k + 1) if 0 <= m < n and area[m, j] > 0]
            if area[k, j] == 0 or not neighbours:
                continue
            area_jump[k, j] = min(max(area[k, j], area[m, j]) / min(area[k, j], area[m, j]) for m in neighbours)
            centroid_jump[k, j] = min(float(np.linalg.norm(centroid[k, j] - centroid[m, j])) for m in neighbours)
    return area_jump, centroid_jump


def without_failed(labels: np.ndarray, checks: SliceChecks, object_ids) -> np.ndarray:
    """Label frames with every failed slice-side cleared."""
    out = labels.copy()
    for j, obj in enumerate(object_ids):
        for k in np.flatnonzero(checks.failed[:, j]):
            out[k][out[k] == obj] = 0
    return out
