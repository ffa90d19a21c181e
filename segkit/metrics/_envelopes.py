"""Lower envelopes of parabolas, one per column of an (n, m) array: for each row j of a column, the
row i that minimises f_i + weight (j - i)^2 (Felzenszwalb and Huttenlocher's 1D distance
transform, vectorised across columns), read at every row or at given (row, column) pairs; and
the same answer found by comparing each read with every row of its column, for columns read at a
few rows. The passes of `_plane_transform`'s separable transform are built on these.
"""

from __future__ import annotations

import numpy as np

# A binary search per point (about 28 ns) against reading every row of the envelopes (about 5 ns a
# position): points that fill more than 1/_SEARCH_VS_READ of the positions (a face of a mask that
# fills the image) read them all.
_SEARCH_VS_READ = 5
# A row of an envelope pass with fewer than 1/_SPARSE_ROW of its columns holding a parabola gathers
# those columns; a fuller row is read whole.
_SPARSE_ROW = 3
_COMPARISON_CHUNK = 1 << 18  # (reads x rows) compared per step: 2 MiB arrays, reused from cache (1.8x faster than 8 MiB)


def lift_rows(values: np.ndarray, weight: float) -> np.ndarray:
    """values (n, m) lifted in place for envelope_argmin: row i gains weight i^2. Every pass lifts
    through here, so equal inputs give equal floats whichever path solves them."""
    position = np.arange(values.shape[0], dtype=np.float64)[:, None]
    values += weight * position * position
    return values


def nearest_by_comparison(values: np.ndarray, weight: float, at) -> np.ndarray:
    """envelope_argmin's answer at `at` = (rows, columns) for values (n, m) not lifted, found by
    comparing each read with every row of its column: the first row i minimising
    values[i, column] + weight (row - i)^2, or -1 where the column holds no finite value.

    About 4 array operations per (read, row), against some 15 per (column, row) to build envelopes,
    in a Python step per row: cheaper when the columns hold few reads (the last in-plane pass, whose
    lines hold a few surface points each)."""
    rows, columns = at
    by_column = np.ascontiguousarray(values.T)  # each column's values contiguous, gathered whole
    position = np.arange(values.shape[0], dtype=np.float64)
    nearest = np.empty(rows.size, dtype=np.int64)
    step = max(1, _COMPARISON_CHUNK // values.shape[0])
    for start in range(0, rows.size, step):
        cost = np.take(by_column, columns[start:start + step], axis=0)  # (reads, n): whole rows copied
        along = position[None, :] - rows[start:start + step, None]
        along *= along
        along *= weight
        cost += along
        found = np.argmin(cost, axis=1)
        found[np.take_along_axis(cost, found[:, None], axis=1)[:, 0] == np.inf] = -1
        nearest[start:start + step] = found
    return nearest


def envelope_argmin(lifted: np.ndarray, weight: float, at=None) -> np.ndarray:
    """Per column of `lifted` (n, m), for each row j the row i minimising f_i + weight (j - i)^2.

    `lifted` holds f_i + weight i^2 (inf where f is empty). Felzenszwalb and Huttenlocher's
    lower envelope, vectorised across columns: one pass builds each column's envelope (vertex
    rows and the boundaries between them), then it is read for every row (an (n, m) array), or
    only at the (rows, columns) given as `at` (index arrays that broadcast together). Empty columns give -1.
    """
    n, m = lifted.shape
    column, vertex, first = _envelope_runs(*_build_envelopes(lifted, weight), n)
    if at is not None and np.broadcast(*at).size * _SEARCH_VS_READ < n * m:
        rows, columns = at
        # The run holding row j of column c is the last one starting at or before it: runs are
        # sorted by (column, first row), so one binary search over column * (n + 1) + first row finds it.
        run = np.searchsorted(column * (n + 1) + first, columns * (n + 1) + rows, side="right") - 1
        return vertex[run]
    by_column = _runs_read_whole(column, vertex, first, n, m)
    if at is None:
        return np.ascontiguousarray(by_column.T)
    rows, columns = at
    return by_column[columns, rows]


def envelope_argmin_by_column(lifted: np.ndarray, weight: float) -> np.ndarray:
    """envelope_argmin(lifted, weight) transposed, (m, n): each column's answers contiguous."""
    n, m = lifted.shape
    return _runs_read_whole(*_envelope_runs(*_build_envelopes(lifted, weight), n), n, m)


def _runs_read_whole(column, vertex, first, n: int, m: int) -> np.ndarray:
    """(m, n): each column is its vertices repeated over their runs of rows."""
    following = np.append(first[1:], n)
    following[np.flatnonzero(np.diff(column))] = n  # a column's last run ends at row n
    return np.repeat(vertex, following - first).reshape(m, n)


def _build_envelopes(lifted: np.ndarray, weight: float):
    """(vertex rows, their start bounds, stack top per column): each column's lower envelope."""
    n, m = lifted.shape
    stacks = _Stacks(n, m, lifted.reshape(-1), 2.0 * weight)
    present = lifted < np.inf
    counts = np.count_nonzero(present, axis=1)  # rows without a parabola (most, on a face's far side) are skipped
    with np.errstate(invalid="ignore"):  # inf - inf in a whole row: NaN, never popped (see _Stacks)
        for row in np.flatnonzero(counts).tolist():
            if counts[row] * _SPARSE_ROW >= m:  # the row read whole
                stacks.push(row, lifted[row], slice(None), present[row])
            else:  # only its parabolas, gathered
                columns = np.flatnonzero(present[row])
                stacks.push(row, lifted[row, columns], columns)
    return stacks.vertex[:n], stacks.bound[:n], stacks.top


class _Stacks:
    """Felzenszwalb and Huttenlocher's stacks of parabolas, one per column, pushed a row at a time.

    The top entry of every stack is also kept apart (row, lifted value, start bound): most new
    parabolas are compared with it alone, and these rows of m values are read whole, where the
    (n, m) stacks need a gather. An empty stack reads as a top at row -1 with value +inf, so the
    new parabola's crossing is -inf (lowest from -inf), and a NaN bound, so it is never popped.
    """

    def __init__(self, n: int, m: int, lifted_flat: np.ndarray, two_weight: float) -> None:
        self.m, self.lifted_flat, self.two_weight = m, lifted_flat, two_weight
        # One spare row: a full stack's slot above its top (see push).
        self.vertex = np.zeros((n + 1, m), dtype=np.int32)
        self.bound = np.zeros((n + 1, m))
        self.vertex_flat, self.bound_flat = self.vertex.reshape(-1), self.bound.reshape(-1)
        self.top = np.full(m, -1, dtype=np.int64)  # stack height - 1 per column
        self.top_row, self.top_value, self.top_bound = np.full(m, -1.0), np.full(m, np.inf), np.full(m, np.nan)
        self.ids = np.arange(m)
        self.above = m + self.ids  # slot of the entry above the top, less top * m

    def push(self, row: int, value: np.ndarray, columns, present=None) -> None:
        """Push row `row`'s parabolas (lifted `value`) in `columns` (a slice or indices); `present`
        marks the columns that hold one (all of them when None)."""
        m, vertex, bound = self.m, self.vertex_flat, self.bound_flat
        whole = isinstance(columns, slice)
        ids = self.ids[columns]
        # Where the new parabola starts to be lowest against the top parabola.
        start = value - self.top_value[columns]
        start /= self.two_weight * (row - self.top_row[columns])
        height = self.top[columns]  # for a whole row, a view: self.top is updated in place
        dropped = start <= self.top_bound[columns]  # the top parabola is never lowest: drop it
        pending = np.flatnonzero(dropped)
        if pending.size:
            height -= dropped
        while pending.size:  # compare with the entries below; the bottom one (bound -inf) stays
            column = pending if whole else ids[pending]
            slot = height[pending] * m + column
            previous = vertex[slot]
            below = self.lifted_flat[previous * m + column]
            crossing = value[pending] - below
            crossing /= self.two_weight * (row - previous)
            start[pending] = crossing
            pending = pending[crossing <= bound[slot]]
            height[pending] -= 1
        # The new entry goes one above the top. A column without a parabola in this row writes there
        # too and keeps its height, so the write is garbage above its top, never read.
        slot = height * m
        slot += self.above[columns]
        if present is None:
            height += 1
            self.top_row[columns], self.top_value[columns], self.top_bound[columns] = row, value, start
        else:
            height += present
            for kept, new in ((self.top_row, row), (self.top_value, value), (self.top_bound, start)):
                np.copyto(kept, new, where=present)
        vertex[slot] = row
        bound[slot] = start
        if not whole:
            self.top[columns] = height


def _envelope_runs(vertex: np.ndarray, bound: np.ndarray, top: np.ndarray, n: int):
    """(column, vertex, first row) of every stack entry, column by column: row j of a column takes
    entry k where bound[k] < j <= bound[k + 1], so entry k's run of rows starts at floor(bound[k]) + 1
    (bounds rise along the stack; bound[0] is -inf). An empty column is one run of -1."""
    m = vertex.shape[1]
    entries = np.maximum(top + 1, 1)
    height = int(entries.max())
    # The stacks' rows up to the highest top, transposed so that each column's entries are
    # contiguous, then the entries in use picked by one mask: 1.5x faster than gathering them by index.
    in_use = np.arange(height) < entries[:, None]  # (m, height)
    value = np.ascontiguousarray(vertex[:height].T)[in_use]
    first = np.ascontiguousarray(bound[:height].T)[in_use]
    np.clip(first, -1.0, n - 1.0, out=first)
    np.floor(first, out=first)
    first += 1.0
    with np.errstate(invalid="ignore"):  # an empty column's entry may be NaN (see _Stacks.push): set to 0 below
        first = first.astype(np.int64)
    column_start = np.cumsum(entries) - entries
    value[column_start[top < 0]] = -1
    first[column_start] = 0
    return np.repeat(np.arange(m), entries), value, first
