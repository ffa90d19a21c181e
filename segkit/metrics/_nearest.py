"""Exact Euclidean distance from grid points to the nearest of a set of target grid points.

Surface distances only ever compare points of one voxel grid. Everything here is exact and
needs numpy alone (importing scipy costs about 0.3 s, a third of a whole `segkit eval` run).
Four stages, each for the points the previous one leaves:

1. Whole planes of targets (a mask that fills the field of view has whole faces): the distance
   to such a plane is the perpendicular one, and its targets leave the search.
2. Few points or few targets (a one-voxel mask): every point against every target.
   Points in planes crowded with points (the faces of a mask that fills the image) go to stage 4.
3. Points near the other surface, the usual case: a search along grid lines. Targets are grouped
   into lines along the axis with the finest spacing; inside a line, the target nearest to a
   position is read from a table of gaps per (line, plane of the points) (`_gap_table`), or found
   by binary search over sorted keys where that table would cost more than it saves. A point's
   squared distance is the minimum, over in-plane offsets o between its line and a target's line,
   of (gap along the line x spacing)^2 + |o|^2 (mm). Offsets are visited in order of increasing
   |o|, so a point is final as soon as its best squared distance is no larger than the next
   |o|^2. The work per point grows with the square of its distance, so it stops after a budget,
   or sooner when its next ring of offsets would cost more than stage 4 for the points still open.
   Points so far outside the targets' bounding box that the rings up to it would cost more than
   stage 4 for them (disjoint masks, a missed lesion) skip the search.
4. The points left (a hole in the prediction, a missed lesion, a leak, disjoint masks): an exact
   distance transform of the targets, restricted to the planes that hold those points. In each
   plane, the squared distance along the plane's normal to the nearest target of every grid line
   comes from the same sorted keys; then one lower envelope of parabolas per in-plane axis
   (Felzenszwalb and Huttenlocher's separable transform) gives, for every position of the plane,
   which target is nearest. Its cost is proportional to the area of those planes, whatever the
   distances, and it runs over a few planes at a time to bound memory.

Every stage ends with the integer offset to the nearest target, and the distance is computed
from it by one formula (`_Metric.squared_mm`), so equal geometric distances give equal floats
whichever stage found them.
"""

from __future__ import annotations

import numpy as np

from segkit.metrics._gap_table import GapTable
from segkit.metrics._plane_transform import (
    NO_GAP,
    SENTINEL,
    PlaneTransform,
    column_reduce,
    columns_of,
    take_rows,
    transform_squared,
)
from segkit.metrics._whole_planes import whole_planes

NO_TARGET = np.int64(1) << 40  # a binary search's gap along a line that holds no target (made inf later)
_CHUNK_ELEMENTS = 1 << 18  # (points x offsets) evaluated per vectorised step of the line search
# Line look-ups (about 25 ns each) before the rest goes to the plane transform (stage 4).
# Typical segmentations need about 25 per point.
_BUDGET_PER_POINT = 40
_MIN_BUDGET = 2_000_000
# Before each ring of offsets (after the first): stop searching if the ring would take more
# look-ups than this many times the grid positions the plane transform needs for the points left
# (a look-up costs about 25 ns, a position of the transform about 100 ns). Checked only for
# rings of more than _RING_CHECK look-ups.
_RING_VS_TRANSFORM = 4
_RING_CHECK = 1 << 20
# Before each ring after the first, points whose upper bound lies beyond _FAR times the radius
# searched so far (a hole's surface, a missed lesion) leave for the transform when the rings up to
# their bounds would take more than _RING_VS_TRANSFORM times its positions: every ring until then
# is spent on them for nothing. Points with no target seen yet keep searching.
_FAR = 4
_BRUTE_FORCE_PAIRS = 1 << 22  # points x targets below which every pair is compared
_DENSE_PLANE = 16  # a plane holding at least 1/16 of its positions as points is solved on its own
# The line search's table of gaps (4 B each) stays within 64 MiB, and is built only when it holds
# fewer than _GAP_TABLE_PER_POINT gaps per point: a gap costs about 3 ns to build, and a look-up
# read from it saves about 17 ns, so it pays from a fifth as many look-ups; a search makes about 25
# per point, and those that stop after the first rings far fewer.
_GAP_TABLE_ENTRIES = 1 << 24
_GAP_TABLE_PER_POINT = 50


def nearest_distances(points: np.ndarray, targets: np.ndarray, spacing, distinct_targets: bool = False) -> np.ndarray:
    """Distance in mm from each point (n, ndim voxel indices) to its nearest target (m, ndim).

    Both index arrays must be non-negative and lie on the same grid; `targets` must be non-empty.
    `distinct_targets` promises that no target is repeated (a surface's points), which makes
    whole planes of targets cheaper to recognise.
    """
    points = np.asarray(points, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    spacing = np.asarray(spacing, dtype=np.float64)
    if points.shape[0] == 0:
        return np.zeros(0)
    metric = _Metric(spacing)
    extent = np.maximum(column_reduce(np.max, points), column_reduce(np.max, targets)) + 1
    squared, targets = whole_planes(points, targets, extent, metric, distinct_targets)
    if targets.shape[0] == 0:
        return np.sqrt(squared)
    if points.shape[0] * targets.shape[0] <= _BRUTE_FORCE_PAIRS:
        return np.sqrt(np.minimum(squared, _brute_force_squared(points, targets, metric)))
    # Planes crowded with points (the faces of a mask that fills the image) go straight to the
    # transform, which costs at most _DENSE_PLANE positions per point there; the rest is searched.
    crowded = np.zeros(points.shape[0], dtype=bool)
    for axis, members in _crowded_planes(points, extent):
        bound = squared[members]
        transform = PlaneTransform(targets, extent, metric, axis)
        squared[members] = np.minimum(bound, transform.squared(columns_of(points, members), bound))
        crowded[members] = True
    rest = np.flatnonzero(~crowded)
    if rest.size == 0:
        return np.sqrt(squared)

    def transform_cost(active_points, bound):  # positions the transform would cover for them
        return min(PlaneTransform.cost(active_points.T, bound, extent, metric, a) for a in range(points.shape[1]))

    open_points = take_rows(points, rest)
    beyond = _beyond_search(open_points, targets, metric, squared[rest], transform_cost)
    searched, left = rest, rest[:0]
    if beyond.any():  # rare: the usual pair keeps the rows already gathered
        searched, left = rest[~beyond], rest[beyond]
        open_points = np.compress(~beyond, open_points, axis=0)
    if searched.size:
        budget = max(_MIN_BUDGET, _BUDGET_PER_POINT * searched.size)
        # Not kept in a name: the search and its work arrays are freed before the transform runs.
        squared[searched], resolved = _LineSearch(targets, extent, metric).squared_distances(
            open_points, budget, squared[searched], transform_cost)
        left = np.concatenate((left, searched[~resolved]))
    if left.size:
        found = transform_squared(columns_of(points, left), targets, extent, metric, squared[left])
        squared[left] = np.minimum(squared[left], found)
    return np.sqrt(squared)


def _beyond_search(points, targets, metric, bound, transform_cost) -> np.ndarray:
    """Mask of the points that go to the transform without a search (disjoint masks, a missed
    lesion, a leak): their distance to the targets' bounding box, a lower bound of the distance to
    their nearest target, lies beyond _FAR times the first ring's radius, and the rings up to it
    would take more look-ups than _RING_VS_TRANSFORM times the transform's positions for them (and
    more than _RING_CHECK). The search would spend those look-ups before it could finish any of them."""
    lo, hi = column_reduce(np.min, targets), column_reduce(np.max, targets)
    outside = np.maximum(lo - points, 0) + np.maximum(points - hi, 0)  # grid steps to the box, per axis
    lower = metric.squared_mm(outside)
    far = lower > (_FAR * _first_ring_radius(metric.spacing[metric.others])) ** 2
    if not far.any():
        return far
    lookups = float(_lookups_within(metric.spacing[metric.others], lower[far], 0.0).sum())
    if lookups <= _RING_CHECK or not _search_costs_more(lookups, far, points, bound, transform_cost):
        return np.zeros_like(far)
    return far


def _search_costs_more(lookups: float, far, points, bound, transform_cost) -> bool:
    """The rule for handing points to the transform early: the search's look-ups still to come for
    the `far` points exceed _RING_VS_TRANSFORM times the transform's positions for them."""
    far_points = np.compress(far, points, axis=0)  # rows under a mask: 3.5x faster than points[far]
    return lookups > _RING_VS_TRANSFORM * transform_cost(far_points, bound[far])


def _first_ring_radius(in_plane_spacing: np.ndarray) -> float:
    """Outer radius (mm) of the line search's first ring of in-plane offsets; each later ring doubles it."""
    return 4.0 * float(in_plane_spacing.max())


def _lookups_within(in_plane_spacing: np.ndarray, radius2, searched2: float):
    """Per point, the in-plane offsets (one look-up each) with searched2 <= |o|^2 < radius2: the
    look-ups a search still makes before it may stop at a distance of sqrt(radius2)."""
    if in_plane_spacing.size == 1:  # the offsets are a line: two per step
        return 2.0 * (np.sqrt(radius2) - np.sqrt(searched2)) / float(in_plane_spacing[0])
    return np.pi * (radius2 - searched2) / float(np.prod(in_plane_spacing))  # a disc, in grid cells


class _Metric:
    """Squared distance in mm of integer grid offsets, always summed in the same order."""

    def __init__(self, spacing: np.ndarray) -> None:
        self.spacing = spacing
        self.axis = int(np.argmin(spacing))  # the line axis of the search
        self.others = [a for a in range(spacing.size) if a != self.axis]

    def squared_mm(self, offsets: np.ndarray) -> np.ndarray:
        """(..., ndim) integer offsets -> (...) squared mm: line axis first, then the in-plane sum."""
        return self.squared_mm_of([offsets[..., a] for a in range(self.spacing.size)])

    def squared_mm_of(self, parts) -> np.ndarray:
        """squared_mm of offsets given one array per axis (no (n, ndim) array to assemble):
        (along x spacing)^2 + ((first in-plane)^2 + (second)^2), summed in that order."""
        along = np.asarray(parts[self.axis] * self.spacing[self.axis])  # an array even for one offset
        across = None
        for a in self.others:
            term = np.asarray(parts[a] * self.spacing[a])
            term *= term
            across = term if across is None else np.add(across, term, out=across)
        along *= along
        return np.add(along, across, out=along)


def _brute_force_squared(points, targets, metric: _Metric) -> np.ndarray:
    squared = np.empty(points.shape[0])
    step = max(1, (1 << 20) // targets.shape[0])
    for start in range(0, points.shape[0], step):
        chunk = points[start:start + step]
        squared[start:start + step] = metric.squared_mm(chunk[:, None, :] - targets[None, :, :]).min(axis=1)
    return squared


class _LineSearch:
    """Targets sorted by (line, position along the line) for binary search."""

    def __init__(self, targets: np.ndarray, extent: np.ndarray, metric: _Metric) -> None:
        self.metric = metric
        self.spacing = metric.spacing
        self.axis = metric.axis  # fewest in-plane offsets per mm of search radius
        self.others = metric.others
        self.extent = extent
        self.line_length = int(extent[self.axis])
        # Line ids index a grid three times wider than the image along each in-plane axis, with
        # the image in the middle third, so any offset smaller than the image never wraps into
        # another line: it lands in an empty line, which simply holds no target.
        widths = [3 * int(extent[a]) for a in self.others]
        self.strides = np.array([int(np.prod(widths[i + 1:])) for i in range(len(widths))], dtype=np.int64)
        self.line_count = int(np.prod(widths))
        keys = np.sort(self._keys(targets))
        self.sorted_keys = np.concatenate(([-SENTINEL], keys, [SENTINEL]))
        # Below the squared gap of a line without targets (NO_GAP from the table, NO_TARGET from a
        # binary search), above any distance inside an image.
        self.no_target_squared = 0.5 * (float(NO_GAP) * self.spacing[self.axis]) ** 2

    def _keys(self, indices: np.ndarray) -> np.ndarray:
        in_plane = indices[:, self.others] + self.extent[self.others]
        return (in_plane @ self.strides) * self.line_length + indices[:, self.axis]

    def squared_distances(self, points: np.ndarray, budget: int, initial: np.ndarray, transform_cost=None):
        """(squared distance per point, resolved): where not resolved, the first value is only an
        upper bound (inf if no target was seen). `initial` holds upper bounds known beforehand.

        The search stops when it has spent `budget` look-ups, or before a ring of offsets whose
        look-ups would exceed _RING_VS_TRANSFORM times the grid positions that the plane
        transform needs for the points still open (`transform_cost(points, upper bounds)`).
        """
        # Points in key order make every batch of queries sorted, which binary search serves
        # from cache: several times faster than the same queries in random order.
        keys = self._keys(points)
        order = np.argsort(keys, kind="stable")
        keys, position = keys[order], points[order, self.axis]
        table = GapTable.build(self.sorted_keys, keys, self.line_length, self.line_count,
                               min(_GAP_TABLE_ENTRIES, _GAP_TABLE_PER_POINT * keys.size))
        best = initial[order].copy()
        resolved = np.ones(points.shape[0], dtype=bool)  # in the caller's order
        active = np.arange(points.shape[0])  # positions in key order
        spent = 0
        for shift, radius2, next_radius2, ring_size in self._offset_chunks(lambda: active.size):
            if ring_size and transform_cost is not None:
                open_points = take_rows(points, order[active])
                far = self._far_points(open_points, best[active], float(radius2[0]), transform_cost)
                resolved[order[active[far]]] = False
                active = active[~far]
                if active.size == 0:
                    break
            ring_lookups = active.size * ring_size
            too_far = (
                ring_size and transform_cost is not None and ring_lookups > _RING_CHECK
                and ring_lookups > _RING_VS_TRANSFORM * transform_cost(take_rows(points, order[active]), best[active])
            )
            if spent > budget or too_far:
                resolved[order[active]] = False
                break
            spent += active.size * shift.size
            if table is None:
                found = self._chunk_minimum(keys[active], position[active], shift, radius2)
            else:
                found = self._chunk_minimum_from_table(table, active, shift, radius2)
            best[active] = np.minimum(best[active], found)
            active = active[best[active] > next_radius2]
            if active.size == 0:
                break
        # Without a break, every line in the image was visited: all distances are exact.
        unsorted = np.empty_like(best)
        unsorted[order] = best
        unsorted[unsorted >= self.no_target_squared] = np.inf  # only empty lines were seen
        return unsorted, resolved

    def _far_points(self, points, best, searched2: float, transform_cost) -> np.ndarray:
        """Mask of the points to hand to the transform now: bounds beyond _FAR x the radius searched,
        and more look-ups to reach them than _RING_VS_TRANSFORM x the transform's positions."""
        far = (best > _FAR * _FAR * searched2) & (best < self.no_target_squared)
        if not far.any():
            return far
        to_come = float(_lookups_within(self.spacing[self.others], best[far], searched2).sum())
        if not _search_costs_more(to_come, far, points, best, transform_cost):
            return np.zeros_like(far)
        return far

    def _chunk_minimum(self, keys, position, shift, radius2) -> np.ndarray:
        """Per point, the smallest squared distance to a target in the lines `shift` away.

        The (offsets x points) work arrays are reused between chunks: fresh arrays of this size
        come from mmap and cost a page fault per 4 KiB on every chunk.
        """
        shape = (shift.size, keys.size)
        work = self._work(shape[0] * shape[1])
        query = work["query"].reshape(shape)  # one sorted row per offset
        np.add(shift[:, None], keys[None, :], out=query)
        slot = np.searchsorted(self.sorted_keys, query)  # slot indexes the sentinel-padded array
        after, before, outside = work["after"].reshape(shape), work["before"].reshape(shape), work["outside"].reshape(shape)
        np.take(self.sorted_keys, slot, out=after)
        np.subtract(after, query, out=after)
        np.subtract(slot, 1, out=slot)
        np.take(self.sorted_keys, slot, out=before)
        np.subtract(query, before, out=before)
        # A neighbour key belongs to the same line only if the gap stays inside the line. With no
        # target in the line the gap is NO_TARGET, far beyond any real distance (made inf later).
        np.greater_equal(after, (self.line_length - position)[None, :], out=outside)
        np.copyto(after, NO_TARGET, where=outside)
        np.greater(before, position[None, :], out=outside)
        np.copyto(before, NO_TARGET, where=outside)
        np.minimum(after, before, out=after)
        return self._smallest_squared(after, radius2, work["gap_mm"].reshape(shape))

    def _chunk_minimum_from_table(self, table: GapTable, active, shift, radius2) -> np.ndarray:
        """_chunk_minimum with the gaps read from the table: two gathers per look-up."""
        shape = (shift.size, active.size)
        work = self._work(shape[0] * shape[1])
        line, row, gap = (work[name].reshape(shape) for name in ("line32", "row32", "gap32"))
        np.add((shift // self.line_length).astype(np.int32)[:, None], table.point_line[active][None, :], out=line)
        np.take(table.row_start, line, out=row)
        np.add(row, table.point_plane[active][None, :], out=row)
        np.take(table.gaps, row, out=gap)
        return self._smallest_squared(gap, radius2, work["gap_mm"].reshape(shape))

    def _smallest_squared(self, gap, radius2, out) -> np.ndarray:
        """Per point (column), the smallest (gap x spacing)^2 + |o|^2 over the offsets (rows)."""
        np.multiply(gap, self.spacing[self.axis], out=out)
        np.multiply(out, out, out=out)
        np.add(out, radius2[:, None], out=out)
        return np.min(out, axis=0)

    def _work(self, size: int) -> dict:
        """Work arrays of exactly `size` elements (views of buffers that only grow)."""
        if getattr(self, "_buffers", None) is None or self._buffers["query"].size < size:
            capacity = max(size, _CHUNK_ELEMENTS)
            self._buffers = {"query": np.empty(capacity, np.int64), "after": np.empty(capacity, np.int64),
                             "before": np.empty(capacity, np.int64), "outside": np.empty(capacity, bool),
                             "gap_mm": np.empty(capacity),
                             **{name: np.empty(capacity, np.int32) for name in ("line32", "row32", "gap32")}}
        return {name: buffer[:size] for name, buffer in self._buffers.items()}

    def _offset_chunks(self, active_count):
        """(key shifts, |o|^2, lower bound of every later |o|^2, ring size or 0) in order of
        increasing |o|; the ring size comes with the first chunk of each ring after the first.

        Offsets come in rings of doubling radius, each cut into chunks that keep
        active points x offsets near _CHUNK_ELEMENTS.
        """
        in_plane_spacing = self.spacing[self.others]
        reach = self.extent[self.others]  # a larger offset leaves the image
        inner, outer = -1.0, _first_ring_radius(in_plane_spacing)
        while inner < float(np.sum((reach * in_plane_spacing) ** 2)):
            offsets, radius2 = _ring(inner, outer, in_plane_spacing, reach)
            shifts = (offsets @ self.strides) * self.line_length
            start = 0
            while start < offsets.shape[0]:
                size = max(1, _CHUNK_ELEMENTS // max(1, active_count()))
                stop = min(start + size, offsets.shape[0])
                later = radius2[stop] if stop < offsets.shape[0] else outer * outer
                ring_size = offsets.shape[0] if start == 0 and inner > 0 else 0
                yield shifts[start:stop], radius2[start:stop], later, ring_size
                start = stop
            inner, outer = outer * outer, 2.0 * outer


def _ring(inner2: float, outer: float, spacing: np.ndarray, reach: np.ndarray):
    """Integer in-plane offsets o with inner2 <= |o|^2 < outer^2 (mm), sorted by |o|^2."""
    half = np.minimum(np.floor(outer / spacing).astype(np.int64), reach - 1)
    axes = [np.arange(-h, h + 1, dtype=np.int64) for h in half]
    offsets = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
    radius2 = np.sum((offsets * spacing) ** 2, axis=1)
    keep = (radius2 >= inner2) & (radius2 < outer * outer)
    order = np.argsort(radius2[keep], kind="stable")
    return offsets[keep][order], radius2[keep][order]


# --- stage 4: distance transform over the planes that hold the remaining points -------------


def _crowded_planes(points, extent):
    """(axis, member indices) for the planes holding at least 1/_DENSE_PLANE of their positions as
    points; a point in crowded planes of several axes (an edge of two faces) belongs to the first."""
    taken = np.zeros(points.shape[0], dtype=bool)
    for axis in range(points.shape[1]):
        area = int(np.prod(np.delete(extent, axis)))
        column = np.ascontiguousarray(points[:, axis])  # read twice: one strided copy
        crowded = np.bincount(column, minlength=int(extent[axis])) * _DENSE_PLANE >= area
        if not crowded.any():
            continue
        members = crowded[column] & ~taken
        taken |= members
        indices = np.flatnonzero(members)
        del column, members  # not held while the caller runs this axis's transform (8 MiB per 1 M points)
        if indices.size:
            yield axis, indices
