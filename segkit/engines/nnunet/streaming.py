"""nnU-Net inference in bounded memory: nnunetv2's steps and numbers, a slab of rows at a time.

nnunetv2's predict_single_npy_array holds the whole case several times over (float32 copies, the
class logits at the model grid, then float64 copies and the logits of every class on the full
grid for the export: 9.3 GB for a 512x512x800 CT). Here the same steps run along the first axis of
nnU-Net's array: crop to the non-zero box, normalise and resample rows to the model grid
(row_resample), slide nnunetv2's own tiles (its positions, Gaussian, mirroring and float16 sums) in
their order, which goes down the first axis; a row is final once the next tile starts past it, so
its sums are divided, averaged over folds, resampled back and turned into labels straight away.
What is held whole: the input as read and the uint8 (or uint16) label map.

Cases outside nnunetv2's default plans (normalisations with per-image masks or ranges, other
resampling functions, separate-z along another axis, cascades) return None, and the caller uses
nnunetv2's whole-volume path; `streaming_refusal` says why.
"""

from __future__ import annotations

import logging
import numpy as np

from segkit.engines.nnunet.row_resample import ROWS_PER_CALL, RowResampler
from segkit.engines.nnunet.slab_window import LabelWriter, slide_tiles

log = logging.getLogger(__name__)

BOX_ROWS = 32
VOXELWISE_NORMALIZATIONS = ("CTNormalization", "NoNormalization")
RESAMPLING_FUNCTION = "resample_data_or_seg_to_shape"


def streaming_refusal(predictor) -> str | None:
    """Why this model's plan cannot be predicted a slab at a time, or None when it can."""
    config = predictor.configuration_manager
    for scheme, masked in zip(config.normalization_schemes, config.use_mask_for_norm):
        if not (scheme in VOXELWISE_NORMALIZATIONS or (scheme == "ZScoreNormalization" and not masked)):
            return f"normalisation {scheme} (use_mask_for_norm={masked})"
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        if config.configuration[key] != RESAMPLING_FUNCTION:
            return f"{key} {config.configuration[key]}"
    if config.previous_stage_name is not None:
        return "a cascade's second stage"
    return None


def predict_streaming(predictor, channels: list[np.ndarray], spacing) -> np.ndarray | None:
    """Label map of `channels` (nnU-Net's (z, y, x) axes, `spacing` in the same order), or None when
    this plan or image needs nnunetv2's whole-volume path."""
    refusal = streaming_refusal(predictor)
    volumes = [v.transpose(predictor.plans_manager.transpose_forward) for v in channels]
    box = None if refusal else _nonzero_box(volumes)
    if refusal or box is None:
        log.info("nnU-Net inference on the whole volume (%s)", refusal or "the image is all zero")
        return None
    plan = _plan(predictor, volumes, box, spacing)
    if plan is None:
        log.info("nnU-Net inference on the whole volume (a resampling row_resample does not cover)")
        return None
    model_rows, logits_resampler = plan
    output = np.zeros(volumes[0].shape, dtype=np.uint8 if len(predictor.label_manager.foreground_labels) < 255 else np.uint16)
    writer = LabelWriter(logits_resampler, predictor.label_manager, output[box])
    slide_tiles(predictor, model_rows, writer)
    return output.transpose(predictor.plans_manager.transpose_backward)


def _nonzero_box(volumes) -> tuple[slice, ...] | None:
    """nnunetv2's crop box: around the voxels that are non-zero in any channel (its hole filling
    adds voxels inside that box only, so the box is the same without it); a slab of rows at a time,
    so that no full-size mask is made."""
    from segkit.io.grid import mask_box

    boxes = []
    for first in range(0, volumes[0].shape[0], BOX_ROWS):
        nonzero = volumes[0][first:first + BOX_ROWS] != 0
        for volume in volumes[1:]:
            nonzero |= volume[first:first + BOX_ROWS] != 0
        box = mask_box(nonzero)
        if box is not None:
            boxes.append((slice(box[0].start + first, box[0].stop + first), *box[1:]))
    if not boxes:
        return None
    return tuple(slice(min(b[axis].start for b in boxes), max(b[axis].stop for b in boxes)) for axis in range(3))


def _plan(predictor, volumes, box, spacing):
    """The model-grid row source and the resampling back, with nnunetv2's shapes and spacings."""
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

    config = predictor.configuration_manager
    original_spacing = [spacing[i] for i in predictor.plans_manager.transpose_forward]
    target_spacing = list(config.spacing)
    if len(target_spacing) < 3:  # 2D plans keep the first axis as it is
        target_spacing = [original_spacing[0], *target_spacing]
    cropped = [v[box] for v in volumes]
    crop_shape = tuple(cropped[0].shape)
    model_shape = tuple(int(n) for n in compute_new_shape(crop_shape, original_spacing, target_spacing))
    data = _resampler(config.configuration["resampling_fn_data_kwargs"], crop_shape, model_shape,
                      original_spacing, target_spacing)
    logits = _resampler(config.configuration["resampling_fn_probabilities_kwargs"], model_shape, crop_shape,
                        target_spacing, original_spacing)
    if data is None or logits is None:
        return None
    normalizers = [_normalizer(predictor, c, cropped[c]) for c in range(len(volumes))]
    ranges = [_normalized_range(normalize, volume) for normalize, volume in zip(normalizers, cropped)]
    return ModelRows(cropped, normalizers, ranges, data), logits


def _normalized_range(normalize, cropped) -> tuple[float, float]:
    """The normalised channel's (min, max) without normalising it whole: each normaliser is monotone
    and float rounding keeps order, so they are the normalised raw extremes."""
    low, high = normalize(np.array([cropped.min(), cropped.max()]))
    return float(low), float(high)


def _resampler(kwargs: dict, in_shape, out_shape, current_spacing, new_spacing) -> RowResampler | None:
    """nnunetv2's choice (determine_do_sep_z_and_axis) as a RowResampler; None for the cases it lacks."""
    from nnunetv2.configuration import ANISO_THRESHOLD
    from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis

    separate, axis = determine_do_sep_z_and_axis(
        kwargs.get("force_separate_z", False), current_spacing, new_spacing,
        kwargs.get("separate_z_anisotropy_threshold", ANISO_THRESHOLD))
    if kwargs.get("is_seg", False) or (separate and (axis != 0 or kwargs.get("order_z", 0) != 0)):
        return None
    return RowResampler(tuple(in_shape), tuple(out_shape), int(kwargs.get("order", 3)), bool(separate))


def _normalizer(predictor, channel: int, cropped):
    """Rows (any dtype) -> float32 rows, as nnunetv2's normaliser of this channel would make them."""
    from nnunetv2.preprocessing.normalization import default_normalization_schemes as schemes

    config = predictor.configuration_manager
    scheme = config.normalization_schemes[channel]
    properties = predictor.plans_manager.foreground_intensity_properties_per_channel[str(channel)]
    if scheme != "ZScoreNormalization":
        normalizer = getattr(schemes, scheme)(use_mask_for_norm=False, intensityproperties=properties)
        return lambda rows: normalizer.run(rows.astype(np.float32), None)
    mean, std = _zscore_statistics(cropped)

    def zscore(rows):
        rows = rows.astype(np.float32)
        rows -= mean
        rows /= max(std, np.float32(1e-8))
        return rows
    return zscore


def _zscore_statistics(cropped) -> tuple[np.float32, np.float32]:
    """The image's mean and std, a slab at a time in float64, rounded to float32 as nnunetv2 holds
    them. nnunetv2 sums a float32 copy of the whole image (840 MB and as much again for the std on a
    512x512x800 volume); its float32 sums may differ from these in the last bits."""
    slabs = [slice(first, first + BOX_ROWS) for first in range(0, cropped.shape[0], BOX_ROWS)]
    mean = sum(float(cropped[s].sum(dtype=np.float64)) for s in slabs) / cropped.size
    squares = sum(float(np.square(cropped[s].astype(np.float64) - mean).sum()) for s in slabs)
    return np.float32(mean), np.float32(np.sqrt(squares / cropped.size))


class ModelRows:
    """The normalised input at the model grid, computed a few rows at a time; requests only move
    forward, so rows before the latest request are dropped."""

    def __init__(self, cropped, normalizers, value_ranges, resampler: RowResampler):
        self.cropped, self.normalizers, self.resampler = cropped, normalizers, resampler
        self.value_ranges = value_ranges
        self.shape = resampler.out_shape
        self.first = 0
        self.rows = np.zeros((len(cropped), 0, *self.shape[1:]), dtype=np.float32)

    def get(self, a: int, b: int) -> np.ndarray:
        if a < self.first:
            raise ValueError(f"rows {a}.. were dropped (first kept: {self.first})")
        have = self.first + self.rows.shape[1]
        if a >= have:
            self.rows, self.first = self._compute(a, b), a
        else:
            self.rows, self.first = self.rows[:, a - self.first:], a
            if b > have:
                self.rows = np.concatenate([self.rows, self._compute(have, b)], axis=1)
        return self.rows[:, :b - a]

    def _compute(self, a: int, b: int) -> np.ndarray:
        out = np.empty((len(self.cropped), b - a, *self.shape[1:]), dtype=np.float32)
        step = b - a if self.resampler.identity else ROWS_PER_CALL
        for first in range(a, b, step):  # resampling's float64 copies stay a few rows deep
            last = min(first + step, b)
            s0, s1 = self.resampler.source_rows(first, last)
            for c, (volume, normalize) in enumerate(zip(self.cropped, self.normalizers)):
                rows = normalize(volume[s0:s1])
                if not self.resampler.identity:  # nnunetv2 resamples in float64 and stores float32
                    rows = self.resampler.resample(rows, s0, first, last, self.value_ranges[c])
                out[c, first - a:last - a] = rows
        return out
