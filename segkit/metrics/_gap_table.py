"""The line search's table of gaps (stage 3 of `_nearest`).

Per (line holding targets, plane holding points): the distance in grid steps along the line from
the plane to the line's nearest target. A look-up of the search is then two gathers (line -> row,
row + plane -> gap) instead of a binary search over every target key (about 25 ns). The table is
dense over those lines and planes, so `_nearest` builds it (in int32, to halve its memory traffic)
only where it holds few gaps per point against the look-ups a search makes.
"""

from __future__ import annotations

import numpy as np

from segkit.metrics._plane_transform import NO_GAP, gaps_on_grid, used_lines

_BLOCK_ENTRIES = 1 << 18  # table entries built at a time (4-8 B of temporaries each)


class GapTable:
    """row_start[line] + point_plane[point] indexes `gaps`; row 0 stands for every line without targets."""

    def __init__(self, row_start, gaps, point_line, point_plane) -> None:
        self.row_start, self.gaps, self.point_line, self.point_plane = row_start, gaps, point_line, point_plane

    @classmethod
    def build(cls, sorted_keys, point_keys, length: int, line_count: int, max_entries: int):
        """From the targets' sorted keys (line * length + position along it, padded with -SENTINEL
        and SENTINEL) and the points' keys, or None when the table would hold more than max_entries
        gaps or overflow int32 indices."""
        target_line = sorted_keys[1:-1] // length
        lines = target_line[np.diff(target_line, prepend=-1) != 0]  # ascending, each once
        planes, point_plane = used_lines(point_keys % length, length)
        entries = (lines.size + 1) * planes.size
        if entries > min(max_entries, np.iinfo(np.int32).max) or line_count > np.iinfo(np.int32).max:
            return None
        row_start = np.zeros(line_count, dtype=np.int32)
        row_start[lines] = np.arange(1, lines.size + 1, dtype=np.int32) * np.int32(planes.size)
        gaps = np.empty(entries, dtype=np.int32)
        gaps[:planes.size] = NO_GAP
        table = gaps[planes.size:].reshape(lines.size, planes.size)
        # In blocks of rows: the temporaries stay a few MiB, and in cache.
        step = max(1, _BLOCK_ENTRIES // planes.size)
        for start in range(0, lines.size, step):
            table[start:start + step] = gaps_on_grid(sorted_keys, lines[start:start + step], planes, length)
        return cls(row_start, gaps, (point_keys // length).astype(np.int32), point_plane.astype(np.int32))
