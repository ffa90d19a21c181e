"""nnunetv2's resampling (resample_data_or_seg with skimage's resize), for a few rows of the first
axis at a time, so that a 512x512x800 volume is never held as float64 whole.

Two of nnunetv2's cases are covered, the ones its default plans produce with the anisotropic axis
first: separate-z along axis 0 (each row resized in-plane exactly as nnunetv2 does it, then the
nearest row along axis 0), and a full 3D spline of order 0-3 (skimage's resize is scipy's zoom on a
grid of cell centres: output i samples input (i + 0.5) * in / out - 0.5, edges repeated). The 3D case
reads only the rows its taps reach; order 3 also pre-filters a margin of SPLINE_MARGIN rows past
them, where the cut's influence on the spline coefficients has decayed to 0.268^24 (about 1e-14),
and clips to the whole input's range as skimage does (the caller knows that range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLINE_MARGIN = 24
# output rows per scipy call: its float64 arrays are the spline coefficients of the rows its taps
# reach (about 12 rows of 536 x 536, 27 MB) and the coordinates (3 x 4 x 512 x 512, 25 MB)
ROWS_PER_CALL = 4


@dataclass(frozen=True)
class RowResampler:
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    order: int
    separate_z: bool = False  # axis 0 is the low-resolution axis: in-plane `order`, nearest along it

    @property
    def identity(self) -> bool:
        return tuple(self.in_shape) == tuple(self.out_shape)

    def source_rows(self, o0: int, o1: int) -> tuple[int, int]:
        """The input rows [s0, s1) that output rows [o0, o1) are computed from."""
        if self.identity or (self.separate_z and self.in_shape[0] == self.out_shape[0]):
            return o0, o1
        if self.separate_z:
            rows = self.nearest_rows(o0, o1)
            return int(rows.min()), int(rows.max()) + 1
        first, last = self._coordinate(o0), self._coordinate(o1 - 1)
        reach = 0 if self.order <= 1 else 1 + SPLINE_MARGIN
        return max(0, int(np.floor(first)) - reach), min(self.in_shape[0], int(np.floor(last)) + 2 + reach)

    def nearest_rows(self, o0: int, o1: int) -> np.ndarray:
        """scipy's own order-0 choice of input row for each output row (its rounding of ties)."""
        from scipy.ndimage import map_coordinates

        coordinates = self._coordinate(np.arange(o0, o1, dtype=np.float64))
        index = np.arange(self.in_shape[0], dtype=np.float64)
        return map_coordinates(index, coordinates[None], order=0, mode="nearest").astype(np.int64)

    def resample(self, rows: np.ndarray, s0: int, o0: int, o1: int, value_range=None) -> np.ndarray:
        """Output rows [o0, o1) (float64) from input rows `rows` (float32 or float64: computed as
        nnunetv2 computes them from a float64 copy), the first of which is row s0.
        `value_range` is the whole input's (min, max): skimage clips a spline's overshoot to it. It
        only matters for orders above 1 (a linear blend stays within its two inputs)."""
        if self.identity:
            return rows[o0 - s0:o1 - s0].astype(np.float64)
        if self.separate_z:
            return self._separate_z(rows, s0, o0, o1)
        pieces = []
        for a in range(o0, o1, ROWS_PER_CALL):  # each piece pre-filters only the rows it reaches
            b = min(a + ROWS_PER_CALL, o1)
            first, stop = self.source_rows(a, b)
            pieces.append(self._spline(rows[first - s0:stop - s0], first, a, b))
        out = np.concatenate(pieces)
        if value_range is not None and self.order > 1:
            np.clip(out, *value_range, out=out)
        return out

    def _coordinate(self, out_index):
        return (out_index + 0.5) * (self.in_shape[0] / self.out_shape[0]) - 0.5

    def _separate_z(self, rows: np.ndarray, s0: int, o0: int, o1: int) -> np.ndarray:
        from skimage.transform import resize

        picked = (np.arange(o0, o1) if self.in_shape[0] == self.out_shape[0] else self.nearest_rows(o0, o1)) - s0
        plane = tuple(self.out_shape[1:])
        resized = {int(i): resize(rows[i].astype(np.float64), plane, self.order, mode="edge", anti_aliasing=False)
                   for i in np.unique(picked)}
        return np.stack([resized[int(i)] for i in picked])

    def _spline(self, rows: np.ndarray, s0: int, o0: int, o1: int) -> np.ndarray:
        """scipy's zoom for these rows, as map_coordinates computes it on the same grid."""
        from scipy.ndimage import map_coordinates

        coordinates = np.empty((3, o1 - o0, *self.out_shape[1:]), dtype=np.float64)
        coordinates[0] = (self._coordinate(np.arange(o0, o1, dtype=np.float64)) - s0)[:, None, None]
        for axis, (n_in, n_out) in enumerate(zip(self.in_shape[1:], self.out_shape[1:]), start=1):
            grid = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
            coordinates[axis] = grid[:, None] if axis == 1 else grid[None, :]
        if self.order <= 1:  # no pre-filter: the rows are the coefficients
            return map_coordinates(rows, coordinates, order=self.order, mode="nearest", prefilter=False,
                                   output=np.float64)
        first = int(np.floor(coordinates[0, 0, 0, 0])) - 1 + SCIPY_SPLINE_PAD  # the taps' rows, padded
        last = int(np.floor(coordinates[0, -1, 0, 0])) + 3 + SCIPY_SPLINE_PAD
        coefficients, first = _spline_coefficients(rows, self.order, first, last)
        coordinates[0] += SCIPY_SPLINE_PAD - first
        coordinates[1:] += SCIPY_SPLINE_PAD  # what scipy's C code adds for its own padding
        return map_coordinates(coefficients, coordinates, order=self.order, mode="nearest", prefilter=False,
                               output=np.float64)


# scipy's map_coordinates(prefilter=True, mode="nearest") pads the input by 12 edge values on every
# axis (_prepad_for_spline_filter), filters axis 0, then 1, then 2 in float64, and shifts the
# coordinates by 12
SCIPY_SPLINE_PAD = 12
STRIP_COLUMNS = 32  # the axis-0 pass works on all rows but only this many columns at a time


def _spline_coefficients(rows: np.ndarray, order: int, first: int, last: int) -> tuple[np.ndarray, int]:
    """scipy's spline coefficients of `rows` for padded rows [first, last) only (clipped to the
    padded extent; returns the first row kept). Each 1D pass is scipy's own spline_filter1d on the
    same lines in the same order, so the values are scipy's: the pass along axis 0 (which needs every
    row) runs on strips of columns, and the in-plane padding (edge copies, which a per-column
    filter maps to copies) is added after it."""
    from scipy.ndimage import spline_filter1d

    p = SCIPY_SPLINE_PAD
    n, height, width = rows.shape
    first, last = max(first, 0), min(last, n + 2 * p)
    kept = np.empty((last - first, height + 2 * p, width + 2 * p), dtype=np.float64)
    for x0 in range(0, width, STRIP_COLUMNS):
        strip = rows[:, :, x0:x0 + STRIP_COLUMNS]
        column = np.concatenate([np.repeat(strip[:1], p, 0), strip, np.repeat(strip[-1:], p, 0)]).astype(np.float64)
        spline_filter1d(column, order, axis=0, output=column, mode="nearest")
        kept[:, p:p + height, p + x0:p + x0 + strip.shape[2]] = column[first:last]
    for axis in (1, 2):
        _pad_edges(kept, axis, p)
        spline_filter1d(kept, order, axis=axis, output=kept, mode="nearest")
    return kept, first


def _pad_edges(array: np.ndarray, axis: int, p: int) -> None:
    """np.pad's "edge" along `axis`, in place: the first and last p entries copy their neighbour."""
    inner = [slice(None)] * array.ndim
    for edge, source in ((slice(0, p), p), (slice(-p, None), -p - 1)):
        inner[axis] = edge
        array[tuple(inner)] = np.take(array, [source], axis=axis)
