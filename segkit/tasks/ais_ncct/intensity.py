"""nnU-Net's CT normalisation and resampling to the model's spacing (and back), each alone.

CT normalisation (nnU-Net v2 `CTNormalization`): the training set's foreground voxels (label > 0)
give one mean, standard deviation and 0.5/99.5 percentiles per channel (nnU-Net's fingerprint
computes them in training); every image is clipped to those percentiles, then z-scored with that
mean and deviation. The numbers are stored in the model package, so inference uses the training
set's, never the test image's own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

@dataclass(frozen=True)
class CTStats:
    mean: float
    std: float
    percentile_00_5: float
    percentile_99_5: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CTStats":
        return cls(**{k: float(data[k]) for k in ("mean", "std", "percentile_00_5", "percentile_99_5")})


def normalise_ct(image: np.ndarray, stats: CTStats) -> np.ndarray:
    clipped = np.clip(np.asarray(image, dtype=np.float32), stats.percentile_00_5, stats.percentile_99_5)
    return ((clipped - stats.mean) / max(stats.std, 1e-8)).astype(np.float32)


def shape_for_spacing(shape, spacing, target_spacing) -> tuple[int, ...]:
    """The grid that covers the same extent at `target_spacing` (nnU-Net's rounding)."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing))


def resample_to_shape(array: np.ndarray, shape, spacing, target_spacing, order: int = 3) -> np.ndarray:
    """Resample onto `shape` keeping the extent, the way nnU-Net's preprocessor and exporter do (the
    model was trained on nnU-Net's own resampling): spline of `order` in-plane and nearest neighbour
    along the slice axis when either grid is anisotropic (largest / smallest spacing > 3), else
    `order` along all three axes."""
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    array = np.asarray(array, dtype=np.float32)
    if tuple(array.shape) == tuple(shape):
        return array.copy()
    out = resample_data_or_seg_to_shape(array[None], list(shape), list(spacing), list(target_spacing),
                                        is_seg=False, order=order, order_z=0, force_separate_z=None)
    return np.asarray(out[0], dtype=np.float32)


def resample_to_spacing(array: np.ndarray, spacing, target_spacing, order: int = 3) -> np.ndarray:
    shape = shape_for_spacing(array.shape, spacing, target_spacing)
    return resample_to_shape(array, shape, spacing, target_spacing, order)


def nearest_slice_sources(old_count: int, new_count: int) -> np.ndarray:
    """The input slice each of `new_count` output slices copies under nnU-Net's order-0 resampling
    along z (map_coordinates, mode 'nearest', centres at scale x (k + 0.5) - 0.5): the same
    coordinates through the same function, on a ramp whose values are the slice numbers."""
    from scipy.ndimage import map_coordinates

    if old_count == new_count:
        return np.arange(new_count)
    scale = float(old_count) / new_count
    centres = scale * (np.arange(new_count) + 0.5) - 0.5
    ramp = np.arange(old_count, dtype=float)
    return map_coordinates(ramp, centres[None], order=0, mode="nearest").astype(int)


@dataclass(frozen=True)
class SliceResampling:
    """`resample_to_shape` from `old_shape` to `new_shape`, computed for some output slices (last axis)
    at a time. nnU-Net resamples a grid whose z is the anisotropic axis slice by slice in-plane, then
    copies the nearest slice along z; so an output slice is the in-plane resampling of one input slice,
    and a slab of output slices needs only the input slices it copies. `rule` is "same" (no change),
    "per_slice" (that case) or "whole" (3D resampling: only the whole volume gives nnU-Net's numbers)."""

    old_shape: tuple
    new_shape: tuple
    spacing: tuple
    target_spacing: tuple
    order: int

    @cached_property
    def rule(self) -> str:
        from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis

        if tuple(self.old_shape) == tuple(self.new_shape):
            return "same"
        separate, axis = determine_do_sep_z_and_axis(None, list(self.spacing), list(self.target_spacing))
        return "per_slice" if separate and axis == 2 else "whole"

    def sources(self) -> np.ndarray:
        """For every output slice, the input slice it is made from (rules "same" and "per_slice")."""
        return nearest_slice_sources(self.old_shape[2], self.new_shape[2])

    def resample_slice(self, plane: np.ndarray) -> np.ndarray:
        """One input slice resampled in-plane exactly as nnU-Net's separate-z path does it (in float64,
        skimage's resize, edge mode, no anti-aliasing), returned as float32 like its output array."""
        from skimage.transform import resize

        if tuple(self.old_shape) == tuple(self.new_shape):
            return np.asarray(plane, dtype=np.float32)
        planar = resize(np.asarray(plane, dtype=float), tuple(self.new_shape[:2]), self.order, mode="edge",
                        anti_aliasing=False)
        return planar.astype(np.float32)
