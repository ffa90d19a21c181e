"""nnU-Net's CT normalisation and resampling to the model's spacing (and back), each alone.

CT normalisation (nnU-Net v2 `CTNormalization`): the training set's foreground voxels (label > 0)
give one mean, standard deviation and 0.5/99.5 percentiles per channel (nnU-Net's fingerprint
computes them in training); every image is clipped to those percentiles, then z-scored with that
mean and deviation. The numbers are stored in the model package, so inference uses the training
set's, never the test image's own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
