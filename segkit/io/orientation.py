"""Move arrays between a file's own axis order and a task's canonical orientation ("RAS", "LAS", ...).

Axis codes follow nibabel: "RAS" means the first array axis increases toward Right, the second
toward Anterior, the third toward Superior. SCT's "RPI" is nibabel's "LAS". "native" keeps the
file's order. Only axis permutations and flips are used, so the round trip is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NATIVE = "native"
_AXIS_PAIRS = ("LR", "PA", "IS")


@dataclass(frozen=True, eq=False)
class Reorientation:
    """An exact map between the file's array order and the `axcodes` order.

    `transform` is a nibabel orientation array (source axis -> canonical axis, flip). Arrays passed
    in have the spatial axes first; any trailing axes (volumes, channels) are carried along. A 2D
    image gets a singleton third axis while it is canonical. Results are C-contiguous arrays; they
    share memory with the input only when nothing had to move.
    """

    axcodes: str
    source_affine: np.ndarray
    source_shape: tuple[int, ...]
    transform: np.ndarray
    canonical_affine: np.ndarray
    canonical_shape: tuple[int, ...]

    @property
    def is_identity(self) -> bool:
        n = len(self.transform)
        return bool(np.array_equal(self.transform, np.column_stack([np.arange(n), np.ones(n)])))

    @property
    def spatial_ndim(self) -> int:
        return min(len(self.source_shape), 3)

    @property
    def _pads_2d(self) -> bool:
        return self.spatial_ndim == 2 and len(self.transform) == 3

    def to_canonical(self, array: np.ndarray, view: bool = False) -> np.ndarray:
        """The array in the canonical orientation: contiguous (flips are negative-stride views, which
        torch.from_numpy refuses), or with `view` a view of `array`, for callers that copy slabs."""
        array = np.asarray(array)
        self._check_source(array)
        if self._pads_2d:
            array = np.expand_dims(array, 2)
        oriented = _ornts().apply_orientation(array, self.transform)
        return oriented if view else np.ascontiguousarray(oriented)

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        expected = self.canonical_shape[: len(self.transform)]
        if array.shape[: len(expected)] != expected:
            raise ValueError(f"array shape {array.shape} does not start with canonical shape {expected}")
        back = _ornts().apply_orientation(array, self.inverse_transform)
        return np.ascontiguousarray(back[:, :, 0] if self._pads_2d else back)

    @property
    def inverse_transform(self) -> np.ndarray:
        return _inverse(self.transform)

    def index_to_canonical(self, ijk) -> np.ndarray:
        """Voxel indices (..., 2 or 3) in the file's order -> indices in the canonical array."""
        if self._is_native_2d:
            return np.asarray(ijk, dtype=np.float64)
        points = self._as_points(ijk)
        canonical_spatial = self.canonical_shape[: len(self.transform)]
        to_canonical = _ornts().inv_ornt_aff(self.inverse_transform, canonical_spatial)  # source -> canonical
        return self._apply(to_canonical, points)

    def index_from_canonical(self, ijk) -> np.ndarray:
        """Voxel indices (..., 3) in the canonical array -> indices in the file's order."""
        points = np.asarray(ijk, dtype=np.float64)
        if self._is_native_2d:
            return points
        to_source = _ornts().inv_ornt_aff(self.transform, self._padded_source_shape)
        result = self._apply(to_source, points)
        return result[..., :2] if self._pads_2d else result

    @property
    def _is_native_2d(self) -> bool:
        return len(self.transform) == 2

    @property
    def _padded_source_shape(self) -> tuple[int, ...]:
        spatial = self.source_shape[: self.spatial_ndim]
        return spatial + (1,) if self._pads_2d else spatial

    def _as_points(self, ijk) -> np.ndarray:
        points = np.asarray(ijk, dtype=np.float64)
        if self._pads_2d and points.shape[-1] == 2:
            points = np.concatenate([points, np.zeros(points.shape[:-1] + (1,))], axis=-1)
        return points

    @staticmethod
    def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
        # matrix entries are 0, +-1 and integer offsets: the result is exact for integer indices
        return points @ matrix[:3, :3].T + matrix[:3, 3]

    def _check_source(self, array: np.ndarray) -> None:
        spatial = self.source_shape[: self.spatial_ndim]
        if array.shape[: len(spatial)] != spatial:
            raise ValueError(f"array shape {array.shape} does not start with the image's shape {spatial}")


def reorientation_to(affine: np.ndarray, shape, axcodes: str) -> Reorientation:
    """Build the map from an image (affine, shape) to the orientation named by `axcodes`."""
    affine = np.asarray(affine, dtype=np.float64)
    shape = tuple(int(n) for n in shape)
    if len(shape) < 2:
        raise ValueError(f"need at least 2 spatial axes, got shape {shape}")
    spatial = shape[: min(len(shape), 3)]
    trailing = shape[len(spatial) :]
    if axcodes.lower() == NATIVE:
        n = len(spatial)
        return Reorientation(NATIVE, affine, shape, _identity(n), affine.copy(), shape)
    target = parse_axcodes(axcodes)
    padded = spatial + (1,) if len(spatial) == 2 else spatial
    ornts = _ornts()
    start = ornts.io_orientation(_spatial_affine(affine, len(spatial)))
    if np.isnan(start).any():
        raise ValueError(f"affine has a degenerate axis; cannot find its orientation:\n{affine}")
    transform = ornts.ornt_transform(start, ornts.axcodes2ornt(target))
    canonical_affine = affine @ ornts.inv_ornt_aff(transform, padded)
    canonical_spatial = tuple(padded[int(src)] for src in _source_axis_of_each_output(transform))
    return Reorientation(
        axcodes=target,
        source_affine=affine,
        source_shape=shape,
        transform=transform,
        canonical_affine=canonical_affine,
        canonical_shape=canonical_spatial + trailing,
    )


def parse_axcodes(axcodes: str) -> str:
    """Validate and upper-case axis codes such as "ras" or "LPI"."""
    codes = axcodes.strip().upper()
    if len(codes) != 3 or sorted(_pair_of(c) for c in codes) != [0, 1, 2]:
        raise ValueError(f"invalid axis codes {axcodes!r}: need one of L/R, one of P/A and one of I/S, e.g. 'RAS'")
    return codes


def _pair_of(code: str) -> int:
    for index, pair in enumerate(_AXIS_PAIRS):
        if code in pair:
            return index
    return -1


def _spatial_affine(affine: np.ndarray, n_spatial: int) -> np.ndarray:
    """For 2D images make sure the unused third column is a proper normal, so orientation is defined."""
    if n_spatial == 3 or np.linalg.norm(affine[:3, 2]) > 0:
        return affine
    fixed = affine.copy()
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    fixed[:3, 2] = normal / np.linalg.norm(normal)
    return fixed


def _identity(n: int) -> np.ndarray:
    return np.column_stack([np.arange(n), np.ones(n)]).astype(np.float64)


def _inverse(transform: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(transform)
    for source_axis, (target_axis, flip) in enumerate(transform):
        inverse[int(target_axis)] = (source_axis, flip)
    return inverse


def _source_axis_of_each_output(transform: np.ndarray) -> list[int]:
    return [int(src) for src, _ in _inverse(transform)]


def _ornts():
    """nibabel's orientations module, imported at first use: importing nibabel takes ~60 ms, and
    `segkit eval` imports segkit.io (and so this module) without ever reorienting."""
    from nibabel import orientations

    return orientations
