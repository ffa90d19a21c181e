"""The line search's table of gaps (stage 3 of `_nearest`).

Per (line holding targets, plane holding points): the distance in grid steps along the line from
the plane to the line's nearest target. A look-up of the search is then two gathers (line -> row,
row + plane -> gap) instead of a binary search over every target key (about 25 ns). The table is
dense over those lines and planes, so `_nearest` builds it (in int32, to halve its memory traffic)
only where it holds few gaps per point against the look-ups a search makes.
"""

from __future__ import annotations

import numpy as np

from segkit.metrics._plane_transform import used_lines

NO_GAP = np.int32(1) << 30  # the gap of a line that holds no target (its square marks "none seen")
_BLOCK_ENTRIES = 1 << 18  # table entries built at a time (about 40 B of temporaries each)


class GapTable:
    """row_start[line] + point_plane[point] indexes `gaps`; row 0 stands for every line without targets."""

    def __init__(self, row_start, gaps, point_line, point_plane) -> None:
        self.row_start, self.gaps, self.point_line, self.point_plane = row_start, gaps, point_line, point_plane

    @classmethod
    def build(cls, target_keys, point_keys, length: int, line_count: int, max_entries: int):
        """From the targets' and the points' sorted keys (line * length + position along it), or None
        when the table would hold more than max_entries gaps or overflow int32 indices."""
        target_line = target_keys // length
        new_line = np.diff(target_line, prepend=-1) != 0
        lines = target_line[new_line]  # ascending, each once
        planes, point_plane = used_lines(point_keys % length, length)
        entries = (lines.size + 1) * planes.size
        if entries > min(max_entries, np.iinfo(np.int32).max) or line_count > np.iinfo(np.int32).max:
            return None
        row_start = np.zeros(line_count, dtype=np.int32)
        row_start[lines] = np.arange(1, lines.size + 1, dtype=np.int32) * np.int32(planes.size)
        gaps = np.empty(entries, dtype=np.int32)
        gaps[:planes.size] = NO_GAP
        row_of_target = (np.cumsum(new_line) - 1).astype(np.int32)
        positions = (target_keys - target_line * length).astype(np.int32)
        _gaps(row_of_target, positions, lines.size, planes.astype(np.int32), out=gaps[planes.size:].reshape(lines.size, planes.size))
        return cls(row_start, gaps, (point_keys // length).astype(np.int32), point_plane.astype(np.int32))


def _gaps(row_of_target, positions, rows: int, planes, out: np.ndarray) -> np.ndarray:
    """Into out (rows, planes) int32: from each plane to the nearest target of each row (targets
    sorted by row, then position; every row holds one). In blocks of rows, so that the int64
    temporaries stay a few MiB."""
    first = np.searchsorted(row_of_target, np.arange(rows + 1))  # row r: targets first[r] .. first[r + 1] - 1
    step = max(1, _BLOCK_ENTRIES // planes.size)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        begin, end = int(first[start]), int(first[stop])
        out[start:stop] = _block_gaps(row_of_target[begin:end] - start, positions[begin:end], first[start:stop + 1] - begin, planes)
    return out


def _block_gaps(row_of_target, positions, first, planes) -> np.ndarray:
    rows = first.size - 1
    # below[r, j]: the row's targets before plane j, from a histogram of the planes each target
    # lies beyond (a running count along the planes, where a binary search per entry took 16 ns).
    beyond = np.searchsorted(planes, positions, side="right")
    histogram = np.bincount(row_of_target.astype(np.int64) * (planes.size + 1) + beyond, minlength=rows * (planes.size + 1))
    below = np.cumsum(histogram.reshape(rows, planes.size + 1)[:, :planes.size], axis=1)
    # Gathers with int64 indices, clipped: int32 indices are converted first (2x slower), and the
    # reads past a row's ends (into the next row, or clipped at the array's ends) are masked below.
    after = below + first[:-1, None]  # the row's first target at or after the plane
    gap = np.take(positions, after, mode="clip") - planes[None, :]
    np.copyto(gap, NO_GAP, where=below >= (first[1:] - first[:-1])[:, None])
    after -= 1  # the row's last target before the plane
    before = planes[None, :] - np.take(positions, after, mode="clip")
    np.copyto(before, NO_GAP, where=below == 0)
    return np.minimum(gap, before, out=gap)
