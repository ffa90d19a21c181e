"""lpm_nnsam2 building blocks without a model: frames and the way back, the walk order, rebuild."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.io.image import Image
from segkit.tasks.lpm_nnsam2.rebuild import clean_frame_labels, frames_to_labels
from segkit.tasks.lpm_nnsam2.sequence import walk_order
from segkit.tasks.lpm_nnsam2.slices import (
    FRAME_SIZE, detect_modality, frames_from_ras, label_frames_from_ras, ras_volume, scale_to_255,
)


def _image(data, axcodes_affine) -> Image:
    return Image(data=data, affine=axcodes_affine, path="mem.nii.gz")


@pytest.mark.parametrize("affine", [
    np.diag([1.0, 1.0, 3.0, 1.0]),  # RAS
    np.diag([-1.0, 1.0, 3.0, 1.0]),  # LAS (SCT's RPI)
    np.array([[0, 1.0, 0, 0], [0, 0, -1.0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]]),  # axial slices along axis 0
])
def test_label_frames_map_back_to_the_input_grid_exactly_enough(affine):
    shape = (5, 40, 30) if affine[2, 0] else (40, 30, 20)
    labels = np.zeros(shape, dtype=np.uint8)
    image = _image(labels, affine)
    ras, grid = ras_volume(image)
    ras_labels = np.zeros_like(ras)
    ras_labels[8:20, 5:15, :] = 1
    ras_labels[24:34, 6:16, :] = 2
    back = grid.label_volume(label_frames_from_ras(ras_labels))
    expected = grid.reorient.from_canonical(ras_labels)
    assert back.shape == shape
    for value in (1, 2):
        dice = 2 * ((back == value) & (expected == value)).sum() / ((back == value).sum() + (expected == value).sum())
        assert dice > 0.97


def test_file_axis_and_index_name_the_axial_slice_in_the_file():
    affine = np.array([[0, 0, 3.0, 0], [1.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    affine[2, 1] = -1.0  # second array axis runs toward Inferior: axial slices along it, flipped
    image = _image(np.zeros((10, 6, 12), dtype=np.float32), affine)
    _, grid = ras_volume(image)
    assert grid.n_slices == 6
    assert grid.file_axis_and_index(0) == (1, 5)
    assert grid.file_axis_and_index(5) == (1, 0)


def test_ct_window_and_mri_percentiles():
    ct = np.array([-1000.0, -30.0, 60.0, 150.0, 900.0])
    assert np.allclose(scale_to_255(ct, "ct"), [0, 0, 127.5, 255, 255])
    assert detect_modality(np.full((10, 10, 3), -1000.0)) == "ct"
    mri = np.linspace(0, 1000, 1001)
    scaled = scale_to_255(mri, "mri")
    assert scaled.min() == 0 and scaled.max() == 255 and detect_modality(mri) == "mri"
    frames = frames_from_ras(np.random.default_rng(0).normal(100, 10, (30, 20, 4)), "mri")
    assert frames.shape == (4, FRAME_SIZE, FRAME_SIZE) and frames.dtype == np.uint8


@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_frames_and_registration_intensities_a_slice_at_a_time_equal_the_whole_volume_scaled(modality):
    from segkit.tasks.lpm_nnsam2.align import registration_scale, registration_window
    from segkit.tasks.lpm_nnsam2.slices import frame_window, resize_2d

    rng = np.random.default_rng(3)
    volume = rng.normal(-200 if modality == "ct" else 300, 400, (37, 29, 6)).round().astype(np.int16)
    volume = volume[::-1]  # a strided view, as ras_volume now returns
    whole = scale_to_255(volume, modality)  # the former way: the whole volume as float32, then each slice
    expected = np.stack([np.clip(np.rint(resize_2d(whole[:, :, k], (FRAME_SIZE, FRAME_SIZE))), 0, 255)
                         for k in range(volume.shape[2])]).astype(np.uint8)
    assert np.array_equal(frames_from_ras(volume, modality), expected)
    window = frame_window(volume, modality)
    registration = registration_window(volume, modality)
    for k in range(volume.shape[2]):
        assert np.array_equal(scale_to_255(volume[:, :, k], modality, window), whole[:, :, k])
        assert np.array_equal(registration_scale(volume[:, :, k], modality, registration),
                              registration_scale(volume, modality)[:, :, k])


def test_label_volume_a_slice_at_a_time_equals_the_whole_volume_rule():
    from segkit.tasks.lpm_nnsam2.slices import resize_2d

    rng = np.random.default_rng(5)
    frames = np.zeros((7, FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
    for k in range(6):  # the last frame stays empty
        frames[k, 40 + 9 * k:150, 60:128 + 5 * k] = 1
        frames[k, 100:200, 120 + 3 * k:220] = 2  # overlaps side 1: the larger resized value wins
        frames[k][rng.random((FRAME_SIZE, FRAME_SIZE)) < 0.01] = 2
    _, grid = ras_volume(_image(np.zeros((45, 38, 7)), np.diag([-1.0, 1.0, 3.0, 1.0])))
    stacked = np.stack([np.stack([resize_2d((f == v).astype(np.float32), grid.in_plane) if (f == v).any()
                                  else np.zeros(grid.in_plane, np.float32) for f in frames], axis=-1) for v in (1, 2)])
    whole = np.where(stacked.max(axis=0) >= 0.5, np.array([1, 2], np.uint8)[np.argmax(stacked, axis=0)], 0)
    assert np.array_equal(grid.label_volume(frames, [1, 2]), grid.reorient.from_canonical(whole.astype(np.uint8)))


def test_walk_goes_outward_from_the_start_slices():
    order = walk_order(6, [2])
    assert order[0] == (2, None)
    assert sorted(k for k, _ in order) == list(range(6))
    assert dict(order)[0] == 1 and dict(order)[5] == 4


def test_rebuild_keeps_both_muscles_of_a_side_but_drops_specks():
    frames = np.zeros((3, FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
    frames[:, 60:90, 40:80] = 1  # multifidus, parted from the erector spinae by a fat plane
    frames[:, 100:150, 40:90] = 1  # erector spinae
    frames[:, 200:205, 200:205] = 1  # a speck
    cleaned = clean_frame_labels(frames)
    assert (cleaned[:, 60:90, 40:80] == 1).all() and (cleaned[:, 100:150, 40:90] == 1).all()
    assert (cleaned[:, 200:205, 200:205] == 0).all()


def test_rebuild_keeps_largest_components_and_fills_holes():
    frames = np.zeros((3, FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
    frames[:, 50:120, 40:100] = 1
    frames[:, 80:90, 60:70] = 0  # a hole
    frames[:, 200:205, 200:205] = 1  # a speck
    frames[:, 50:120, 150:210] = 2
    cleaned = clean_frame_labels(frames)
    assert (cleaned[:, 80:90, 60:70] == 1).all() and (cleaned[:, 200:205, 200:205] == 0).all()
    image = _image(np.zeros((64, 64, 3), dtype=np.float32), np.eye(4))
    _, grid = ras_volume(image)
    labels = frames_to_labels(frames, grid)
    assert labels.shape == (64, 64, 3) and set(np.unique(labels)) == {0, 1, 2}
