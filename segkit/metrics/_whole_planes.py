"""Stage 1 of `_nearest`: planes made entirely of targets (a mask that fills the field of view has
whole faces). The distance to such a plane is the perpendicular one, so its targets leave the later
stages. `metric` is `_nearest._Metric` (the squared-mm formula of integer offsets).
"""

from __future__ import annotations

import numpy as np

from segkit.metrics._plane_transform import take_rows


def whole_planes(points, targets, extent, metric, distinct: bool = False):
    """Squared distance to the nearest plane made entirely of targets, and the other targets.
    `distinct`: no target is repeated (surface points), so counting them shows which planes are whole."""
    squared = np.full(points.shape[0], np.inf)
    in_whole_plane = np.zeros(targets.shape[0], dtype=bool)
    for axis in range(targets.shape[1]):
        planes, members = _planes_full_of_targets(targets, extent, axis, distinct)
        if planes.size == 0:
            continue
        in_whole_plane[members] = True
        slot = np.searchsorted(planes, points[:, axis])
        gap = np.minimum(
            np.abs(points[:, axis] - planes[np.minimum(slot, planes.size - 1)]),
            np.abs(points[:, axis] - planes[np.maximum(slot - 1, 0)]),
        )
        offsets = np.zeros_like(points)
        offsets[:, axis] = gap
        squared = np.minimum(squared, metric.squared_mm(offsets))
    return squared, np.compress(~in_whole_plane, targets, axis=0) if in_whole_plane.any() else targets


def _planes_full_of_targets(targets, extent, axis: int, distinct: bool):
    """(sorted indices of the planes normal to `axis` in which every position holds a target, indices
    of the targets in those planes).

    Candidates are the planes that hold at least as many targets as positions. Distinct targets
    make every candidate whole; otherwise each candidate's positions are marked, so a repeated
    target cannot make a plane look whole. The marks take at most one byte per target (every
    candidate holds at least `area` of them); they cost 8 of the 13 ms per axis on the 1.1 M
    points of a mask that fills a 512x512x300 image.
    """
    others = [a for a in range(targets.shape[1]) if a != axis]
    area = int(np.prod(extent[others]))
    column = np.ascontiguousarray(targets[:, axis])  # a strided column: one copy, read twice
    is_candidate = np.bincount(column, minlength=int(extent[axis])) >= area
    if not is_candidate.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    inside = np.flatnonzero(is_candidate[column])  # only the candidates' targets are placed
    if distinct:
        return np.flatnonzero(is_candidate), inside
    rows = take_rows(targets, inside)
    plane_rank = (np.cumsum(is_candidate) - 1)[rows[:, axis]]
    position, stride = plane_rank * area, area
    for a in others:  # + the target's in-plane position, in C order
        stride //= int(extent[a])
        position += rows[:, a] * stride
    candidates = np.flatnonzero(is_candidate)
    marked = np.zeros(candidates.size * area, dtype=bool)
    marked[position] = True
    whole = marked.reshape(candidates.size, area).all(axis=1)
    return candidates[whole], inside[whole[plane_rank]]
