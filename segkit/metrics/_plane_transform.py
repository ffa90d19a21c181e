"""Stage 4 of `_nearest`: an exact distance transform of the targets over a stack of planes.

For the points the cheaper stages leave (far from the other surface). In each plane, the squared
distance along the plane's normal to the nearest target of every grid line comes from sorted
keys; then one lower envelope of parabolas per in-plane axis (Felzenszwalb and Huttenlocher's
separable transform) gives, for every position of the plane, which target is nearest. The last
axis's envelopes are read only at the points; where its lines hold few points, each point is
compared with every position of its line instead (`nearest_by_comparison`). Where the points fill
most positions of their planes (the faces of a mask that fills the image), every position is
solved by whole-array steps and read at the points (`_squared_on_grid`). Its cost is
proportional to the area of those planes, whatever the distances, and it runs over a few planes at
a time to bound memory. `metric` is `_nearest._Metric` (spacing and the squared-mm formula).
"""

from __future__ import annotations

import numpy as np

from segkit.metrics._envelopes import envelope_argmin, envelope_argmin_by_column, lift_rows, nearest_by_comparison

_PLANE_BATCH_PIXELS = 1 << 21  # grid positions per batch of the plane transform (about 70 B each)
SENTINEL = np.int64(1) << 62  # beyond every key: the sorted keys are padded with -SENTINEL and SENTINEL
NO_GAP = np.int32(1) << 30  # the gap along a line that holds no target (made inf later)
# The last in-plane pass compares each point with every position of its line (nearest_by_comparison)
# where its lines hold at most this many points on average: 2-3x faster than building their
# envelopes at 2.6-4.6 points per line (a hole's surface, disjoint masks), break-even near 10.
_COMPARED_POINTS_PER_LINE = 8
# Points at more than 1/_WHOLE_GRID of a batch's positions: every position is solved (_squared_on_grid).
_WHOLE_GRID = 2


def column_reduce(reduce, indices: np.ndarray, axes=None) -> np.ndarray:
    """reduce(indices[:, a]) for each axis a (every column by default), a column at a time: 6x
    faster on (n, 3) index arrays than an axis-0 reduction, which walks three values per step."""
    return np.array([reduce(indices[:, a]) for a in (range(indices.shape[1]) if axes is None else axes)])


def take_rows(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """array[indices] for an (n, k) array and an index array: np.take along axis 0 copies each row
    whole, where fancy indexing walks it value by value (1.8 against 6.8 ms for 400 k rows of 3 int64)."""
    return np.take(array, indices, axis=0)


def columns_of(points: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The rows `indices` of (n, ndim) points as columns, (ndim, len(indices)): PlaneTransform's
    input. Made per call rather than once for all the points: a fresh process pays a page fault per
    4 KiB of memory it has not used before, and all the columns at once were 27 MB more at peak
    for 1.1 M face points (15 ms more per process than the time they saved)."""
    return np.ascontiguousarray(take_rows(points, indices).T)


def transform_squared(columns, targets, extent, metric, bound) -> np.ndarray:
    """Exact squared distances for points far from the targets; `bound` holds upper bounds (or inf).

    The planes are taken normal to the axis that makes the transform smallest (planes that hold
    points x the in-plane window that can hold their nearest targets).
    """
    costs = [PlaneTransform.cost(columns, bound, extent, metric, axis) for axis in range(columns.shape[0])]
    return PlaneTransform(targets, extent, metric, int(np.argmin(costs))).squared(columns, bound)


class PlaneTransform:
    """Exact nearest targets for every position of a stack of planes normal to one axis.

    Points come as `columns`, (ndim, n): one row of coordinates per axis. Each pass over a column
    of an (n, ndim) array reads the whole array (its rows are 24 bytes apart); a row of columns is
    contiguous (a binary search of 1.1 M face points: 2.4 against 6.4 ms)."""

    def __init__(self, targets, extent, metric, axis: int) -> None:
        self.metric, self.axis, self.extent = metric, axis, extent
        self.others = [a for a in range(extent.size) if a != axis]
        self.length = int(extent[axis])
        keys = np.sort(self._line_ids(targets[:, self.others]) * self.length + targets[:, axis])
        self.sorted_keys = np.concatenate(([-SENTINEL], keys, [SENTINEL]))

    def _line_ids(self, in_plane: np.ndarray) -> np.ndarray:
        return np.ravel_multi_index(tuple(in_plane.T), tuple(int(e) for e in self.extent[self.others]))

    @staticmethod
    def _window(columns, bound, extent, metric, axis: int):
        """In-plane box (lo, hi inclusive) that holds every target within the bounds of the points."""
        others = [a for a in range(extent.size) if a != axis]
        top = extent[others] - 1
        reach = float(np.sqrt(np.max(bound)))
        if not np.isfinite(reach):
            return np.zeros(len(others), dtype=np.int64), top
        margin = np.ceil(reach / metric.spacing[others]).astype(np.int64)
        lo = np.maximum(np.array([columns[a].min() for a in others]) - margin, 0)
        hi = np.minimum(np.array([columns[a].max() for a in others]) + margin, top)
        return lo, hi

    @staticmethod
    def cost(columns, bound, extent, metric, axis: int) -> float:
        lo, hi = PlaneTransform._window(columns, bound, extent, metric, axis)
        planes = np.count_nonzero(np.bincount(columns[axis]))
        return float(planes) * float(np.prod(hi - lo + 1))

    def squared(self, columns: np.ndarray, bound: np.ndarray) -> np.ndarray:
        lo, hi = self._window(columns, bound, self.extent, self.metric, self.axis)
        shape = tuple(int(v) for v in hi - lo + 1)
        per_batch = max(1, _PLANE_BATCH_PIXELS // int(np.prod(shape)))
        planes = np.flatnonzero(np.bincount(columns[self.axis]))
        if planes.size <= per_batch:  # one batch: no sorting by plane (0.02 s and a copy of 1 M points)
            return self._solve(planes, lo, shape, columns)
        order = np.argsort(columns[self.axis], kind="stable")
        sorted_planes = columns[self.axis][order]
        squared = np.empty(columns.shape[1])
        for start in range(0, planes.size, per_batch):
            batch = planes[start:start + per_batch]
            first, stop = np.searchsorted(sorted_planes, [batch[0], batch[-1] + 1])
            members = order[first:stop]
            squared[members] = self._solve(batch, lo, shape, np.take(columns, members, axis=1))
        return squared

    def _solve(self, planes, lo, shape, columns) -> np.ndarray:
        """Squared distances of the points (`columns`, all lying in `planes`) over the in-plane box lo + shape."""
        # Along the normal: per grid line of the box and per plane, the gap to the line's nearest target.
        lines = np.ravel_multi_index(np.ix_(*[int(lo[k]) + np.arange(n) for k, n in enumerate(shape)]),
                                     tuple(int(e) for e in self.extent[self.others])).reshape(-1)
        gap = gaps_on_grid(self.sorted_keys, lines, planes, self.length)
        along = gap * self.metric.spacing[self.axis]
        values = np.multiply(along, along, out=along)
        values[gap == NO_GAP] = np.inf
        plane_index = np.searchsorted(planes, columns[self.axis])
        local = [columns[a] - lo[k] for k, a in enumerate(self.others)]
        if len(shape) == 2 and columns.shape[1] * _WHOLE_GRID >= gap.size:
            # Points at most positions (the faces of a mask that fills the image): every position
            # is solved by whole-array steps, then read at the points.
            on_grid = self._squared_on_grid(values.reshape(shape + (planes.size,)), gap)
            return np.take(on_grid, _flat_index((plane_index, *local), (planes.size, *shape)))
        coords = self._nearest_lines(values.reshape(shape + (planes.size,)), gap, local, plane_index)
        del values
        # The point's nearest target lies on the grid line through its traced in-plane position, at
        # that line's gap from the point's plane: read back from the grid's gaps (a gather, where a
        # second binary search per point took 5x longer).
        offsets = [None] * columns.shape[0]  # per axis: no (points, ndim) array to fill
        offsets[self.axis] = gap[np.ravel_multi_index(tuple(coords), shape), plane_index]
        del gap
        for k, a in enumerate(self.others):
            offsets[a] = local[k] - coords[k]
        squared = self.metric.squared_mm_of(offsets)
        squared[offsets[self.axis] == NO_GAP] = np.inf
        return squared

    def _squared_on_grid(self, values, gap) -> np.ndarray:
        """Squared distances at every position of (first, last, plane) `values` (the squared gaps
        along the normal, from `gap`, overwritten), flat in (plane, first, last) order.

        The same passes and trace as _nearest_lines, with floats computed by the same operations
        in the same order, so the answers are the same bits; but every envelope is read whole and
        each pass's answer keeps the layout the envelopes give (column by column), so no index
        array per point is built. The first pass's columns are (last, plane); the second pass's
        lines are (plane, first)."""
        first, last, planes = values.shape
        gap = gap.reshape(-1)  # (first, last, plane) order
        nearest_row, along = self._first_pass_on_grid(values, gap)
        weight = self._squared_spacing(1)
        # -1 (no target in the window: only possible with an empty window) reads position 0
        last_at = np.maximum(envelope_argmin_by_column(lift_rows(along, weight), weight), 0).astype(np.int64)
        del along
        last_at = last_at.reshape(planes, first, last)
        p, i = np.arange(planes)[:, None, None], np.arange(first)[:, None]  # grid coordinates, to broadcast
        first_at = np.take(nearest_row, _flat_index((last_at, p, i), (last, planes, first)))
        first_at = np.maximum(first_at, 0).astype(np.int64)
        offsets = [None] * self.extent.size
        offsets[self.axis] = np.take(gap, _flat_index((first_at, last_at, p), (first, last, planes)))
        offsets[self.others[0]] = i - first_at
        offsets[self.others[1]] = np.arange(last) - last_at
        squared = self.metric.squared_mm_of(offsets)
        squared[offsets[self.axis] == NO_GAP] = np.inf
        return squared.reshape(-1)

    def _first_pass_on_grid(self, values, gap):
        """The first in-plane pass of _squared_on_grid: the nearest row of every (last, plane)
        column, as (last, plane, first), and the squared distance to it as (last, plane x first):
        the second pass's input, computed as _along_first_axis does."""
        first, last, planes = values.shape
        weight = self._squared_spacing(0)
        nearest_row = envelope_argmin_by_column(lift_rows(values.reshape(first, last * planes), weight), weight)
        nearest_row = nearest_row.reshape(last, planes, first)
        index = _flat_index((np.maximum(nearest_row, 0), np.arange(last)[:, None, None], np.arange(planes)[:, None]),
                            (first, last, planes))
        along = self._squared_to_nearest_row(np.arange(first), nearest_row, np.take(gap, index), weight)
        return nearest_row, along.reshape(last, planes * first)

    def _nearest_lines(self, values, gap, local, plane_index) -> list[np.ndarray]:
        """Per point (in-plane coordinates `local`, plane `plane_index`), the in-plane position of
        the grid line that holds its nearest target: one lower envelope of parabolas per in-plane
        axis, then each point traced back through them. Only the lines along the last axis that
        hold points are read (of the first axis's transform too), and those only at the points,
        since the trace reads nothing else; where those lines hold a few points each, the last axis
        compares each point with every position of its line instead of building envelopes.
        `values` (the squared gaps along the normal, from `gap`) is overwritten: each pass lifts its
        input in place, so the plane stack is held once."""
        line_shape = values.shape[:-2] + values.shape[-1:]  # lines along the last axis: (first axis,) plane
        through = np.ravel_multi_index((*local[:-1], plane_index), line_shape)
        lines, line_of_point = used_lines(through, int(np.prod(line_shape)))
        line_of_point = line_of_point.reshape(-1)
        if len(local) == 1:
            along_last, first_argmin = values[:, lines], None
        else:
            along_last, first_argmin = self._along_first_axis(values, gap, lines)
        weight = self._squared_spacing(len(local) - 1)
        if line_of_point.size <= _COMPARED_POINTS_PER_LINE * along_last.shape[1]:
            envelope = nearest_by_comparison(along_last, weight, (local[-1], line_of_point))
        else:
            envelope = envelope_argmin(lift_rows(along_last, weight), weight, at=(local[-1], line_of_point))
        # -1 (no target in the window: only possible with an empty window) reads position 0
        coords = list(local)
        coords[-1] = np.maximum(envelope, 0).astype(np.int64)
        if first_argmin is not None:
            coords[0] = np.maximum(first_argmin[coords[-1], line_of_point], 0).astype(np.int64)
        return coords

    def _along_first_axis(self, values, gap, lines):
        """The transform along the first in-plane axis of (first, last, plane) `values`, on `lines`
        (ids of (first, plane)) only: its values there as (last axis, lines), and the nearest row.
        `values` is lifted in place; the squared gap at the nearest row is computed again from `gap`
        by the same two products, so it is the same float."""
        first, last, planes = values.shape
        row, plane = np.divmod(lines, planes)
        columns = np.arange(last)[:, None] * planes + plane[None, :]  # (last, lines) in values[row]
        weight = self._squared_spacing(0)
        lifted = lift_rows(values.reshape(first, last * planes), weight)
        argmin = envelope_argmin(lifted, weight, at=(row[None, :], columns))  # (last, lines)
        nearest_gap = gap.reshape(-1)[np.maximum(argmin, 0) * lifted.shape[1] + columns]
        return self._squared_to_nearest_row(row, argmin, nearest_gap, weight), argmin

    def _squared_to_nearest_row(self, rows, nearest_row, nearest_gap, weight: float) -> np.ndarray:
        """The first in-plane pass's answer in mm^2: weight (row - nearest row)^2 + (the gap there
        along the normal x its spacing)^2, inf where the column holds no target (nearest row -1,
        gap NO_GAP). Both the grid and the points path compute it here, so it is the same float."""
        along = np.subtract(rows, nearest_row, dtype=np.float64)  # small integers: exact
        np.multiply(along, along, out=along)
        along *= weight
        along_normal = np.multiply(nearest_gap, self.metric.spacing[self.axis])
        along += np.multiply(along_normal, along_normal, out=along_normal)
        along[nearest_row < 0] = np.inf
        return along

    def _squared_spacing(self, k: int) -> float:
        """The envelope weight along in-plane axis k: its spacing squared (mm^2 per grid step^2)."""
        return float(self.metric.spacing[self.others[k]]) ** 2


def _flat_index(coordinates, sizes) -> np.ndarray:
    """np.ravel_multi_index(coordinates, sizes) as int64, for coordinates already in range that
    broadcast to the first one's shape: no bounds checks, in place on one array (0.4 against 1.9 ms
    on 0.5 M positions)."""
    index = np.array(coordinates[0], dtype=np.int64)
    for coordinate, size in zip(coordinates[1:], sizes[1:]):
        index *= size
        index += coordinate
    return index


def gaps_on_grid(sorted_keys: np.ndarray, lines: np.ndarray, planes: np.ndarray, length: int) -> np.ndarray:
    """(lines, planes) int32 array: the distance in grid steps from each plane to the nearest target of
    each line (both ascending; keys are line * length + position, sorted and padded with -SENTINEL and
    SENTINEL); NO_GAP where the line holds none.

    Along a line, each target is the nearest from the plane past the midpoint with the target before
    it (the line's first target from its first plane) up to the next target's midpoint, so the grid is
    built as runs, one per target (np.repeat), then |run's target - plane|: about 3 ns a position,
    against 10 for a search of every position among the keys."""
    if lines.size == 0 or planes.size == 0:
        return np.full((lines.size, planes.size), NO_GAP, dtype=np.int32)
    row, position = _targets_on_lines(sorted_keys, lines, length)
    first_of_line = np.ones(row.size, dtype=bool)
    np.not_equal(row[1:], row[:-1], out=first_of_line[1:])
    held = row[first_of_line]  # the rows whose lines hold targets
    start = np.zeros(position.size, dtype=np.int64)  # the first plane of each target's run
    later = ~first_of_line[1:]
    start[1:][later] = np.searchsorted(planes, (position[:-1][later] + position[1:][later]) // 2, side="right")
    start += (np.cumsum(first_of_line) - 1) * planes.size
    runs = np.repeat(position.astype(np.int32), np.diff(np.append(start, held.size * planes.size)))
    if held.size == lines.size:
        nearest = runs.reshape(lines.size, planes.size)
    else:  # a line without targets reads as one at -NO_GAP, beyond every gap
        nearest = np.full((lines.size, planes.size), -NO_GAP, dtype=np.int32)
        nearest[held] = runs.reshape(held.size, planes.size)
    gap = np.subtract(nearest, planes.astype(np.int32)[None, :], out=nearest)
    np.abs(gap, out=gap)
    return np.minimum(gap, NO_GAP, out=gap)


def _targets_on_lines(sorted_keys: np.ndarray, lines: np.ndarray, length: int):
    """(row in `lines`, position along the line) of the targets on those lines, in key order."""
    first, stop = np.searchsorted(sorted_keys, [lines[0] * length, (lines[-1] + 1) * length])
    line, position = np.divmod(sorted_keys[first:stop], length)
    row = np.searchsorted(lines, line)
    on_grid = lines[row] == line
    return row[on_grid], position[on_grid]


def used_lines(line_ids: np.ndarray, line_count: int):
    """np.unique(line_ids, return_inverse=True) for ids below line_count, by marking them."""
    used = np.zeros(line_count, dtype=bool)
    used[line_ids] = True
    new_id = np.cumsum(used) - 1
    return np.flatnonzero(used), new_id[line_ids]
