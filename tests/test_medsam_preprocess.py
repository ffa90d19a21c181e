"""medsam preprocessing pieces (no model): area resize, normalisation, padding, box scaling, slice order."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.tasks.medsam.preprocess import (
    area_resize,
    area_weights,
    neighbour_box_256,
    preprocess_slice,
    resized_shape,
    sam_box_256,
)
from segkit.tasks.medsam.propagate import slice_order


def supersampled_area_resize(image: np.ndarray, out_shape) -> np.ndarray:
    """Area interpolation by brute force: repeat every pixel out_n times, average blocks of in_n."""
    out = image.astype(np.float64)
    for axis, new_n in enumerate(out_shape):
        old_n = out.shape[axis]
        fine = np.repeat(out, new_n, axis=axis)
        shape = list(out.shape)
        shape[axis : axis + 1] = [new_n, old_n]
        out = fine.reshape(shape).mean(axis=axis + 1)
    return out


@pytest.mark.parametrize("in_shape, out_shape", [((99, 117), (217, 256)), ((300, 180), (256, 154)), ((64, 64), (256, 256)), ((512, 384), (256, 192)), ((7, 3), (5, 2))])
def test_area_resize_is_exact_area_interpolation(in_shape, out_shape):
    image = np.random.default_rng(0).normal(size=in_shape)
    assert np.allclose(area_resize(image, out_shape), supersampled_area_resize(image, out_shape), atol=1e-10)


def test_area_resize_differs_from_torch_adaptive_pooling_for_non_integer_factors():
    """Why segkit does not use F.interpolate(mode='area'): it is not area interpolation."""
    import torch
    import torch.nn.functional as F

    image = np.random.default_rng(1).normal(size=(300, 180))
    pooled = F.interpolate(torch.from_numpy(image)[None, None], size=(256, 154), mode="area")[0, 0].numpy()
    assert np.abs(pooled - supersampled_area_resize(image, (256, 154))).max() > 0.05


def test_area_weights_rows_sum_to_one():
    for n_in, n_out in [(117, 256), (300, 256), (13, 5)]:
        assert np.allclose(area_weights(n_in, n_out).sum(axis=1), 1.0)


def test_resized_shape_rounds_like_the_official_script():
    assert resized_shape(99, 117) == (217, 256)  # 99 * 256 / 117 = 216.6 -> 217
    assert resized_shape(300, 180) == (256, 154)  # 153.6 -> 154
    assert resized_shape(1000, 1) == (256, 1)  # int(0.256 + 0.5) = 0: kept at 1 pixel, never empty


def test_preprocess_normalises_the_resized_slice_and_pads_bottom_right():
    rng = np.random.default_rng(2)
    slice_2d = rng.uniform(100, 900, size=(99, 117))
    tensor, new_size = preprocess_slice(slice_2d)
    assert tensor.shape == (1, 3, 256, 256) and tensor.dtype == np.float32
    assert new_size == (217, 256)
    content = tensor[0, 0, :217, :256]
    assert content.min() == 0.0 and np.isclose(content.max(), 1.0)
    assert not tensor[0, :, 217:, :].any()  # padding rows at the bottom
    assert np.array_equal(tensor[0, 0], tensor[0, 2])  # three identical channels
    expected = supersampled_area_resize(slice_2d, (217, 256))
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    assert np.allclose(content, expected, atol=1e-6)


def test_constant_slice_does_not_divide_by_zero():
    tensor, _ = preprocess_slice(np.full((50, 60), 7.0))
    # (max - min) is float round-off here; the official 1e-8 floor keeps the result near zero
    assert np.isfinite(tensor).all() and np.abs(tensor).max() < 1e-4


def test_box_scaling_swaps_rows_and_columns_into_sam_xy():
    # rows 10..40, cols 20..90 of a 100 x 200 slice; ratio 256 / 200 = 1.28, truncated
    assert sam_box_256((10, 20, 40, 90), (100, 200)).tolist() == [25, 12, 115, 51]


def test_neighbour_box_is_the_widened_mask_box_at_256_scale():
    mask = np.zeros((128, 64), np.uint8)
    mask[10:21, 30:41] = 1  # ratio 2: rows 20..41, cols 60..81 at 256 scale
    assert neighbour_box_256(mask).tolist() == [57, 17, 84, 44]
    assert neighbour_box_256(np.zeros((128, 64), np.uint8)) is None
    edge = np.zeros((128, 64), np.uint8)
    edge[0:5, 60:64] = 1
    assert neighbour_box_256(edge).tolist() == [117, 0, 130, 12]  # clipped at 0


def test_slice_order_starts_in_the_middle_and_walks_outward():
    assert slice_order(3, 8) == [(5, None), (6, 5), (7, 6), (8, 7), (4, 5), (3, 4)]
    assert slice_order(4, 4) == [(4, None)]
