"""medsam prompts: --box parsing and validation, --box-mm, --prompt-mask (no model needed)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from segkit.errors import PromptError, SegkitError
from segkit.tasks.medsam.prompts import (
    Box,
    box_from_mm,
    boxes_from_mask,
    collect_boxes,
    parse_box,
    parse_box_mm,
)

SHAPE_3D = (40, 50, 30)


def test_3d_box_parses_in_array_order():
    box = parse_box("1, 2,3,10,20,29", SHAPE_3D)
    assert box.lo == (1, 2, 3) and box.hi == (10, 20, 29)
    assert box.in_plane(2) == (1, 2, 10, 20)
    assert box.in_plane(0) == (2, 3, 20, 29)
    assert box.to_dict()["box"] == [1, 2, 3, 10, 20, 29]


def test_2d_box_on_2d_image():
    assert parse_box("0,0,39,49", (40, 50)) == Box((0, 0), (39, 49))


@pytest.mark.parametrize("axis, expected_lo, expected_hi", [(0, (7, 1, 2), (7, 3, 4)), (1, (1, 7, 2), (3, 7, 4)), (2, (1, 2, 7), (3, 4, 7))])
def test_slice_box_maps_rows_and_columns_to_the_remaining_axes(axis, expected_lo, expected_hi):
    box = parse_box("1,2,3,4", SHAPE_3D, slice_axis=axis, slice_index=7)
    assert (box.lo, box.hi) == (expected_lo, expected_hi)


@pytest.mark.parametrize(
    "text, shape, match",
    [
        ("1,2,3,4", SHAPE_3D, "6 integers"),  # wrong count for 3D
        ("1,2,3,4,5,6,7", SHAPE_3D, "6 integers"),
        ("1,2,3,4,5,6", (40, 50), "4 integers"),  # wrong count for 2D
        ("1,2,x,4", (40, 50), "comma-separated integer"),
        ("1.5,2,3,4", (40, 50), "comma-separated integer"),
        ("", (40, 50), "comma-separated integer"),
        ("10,2,3,5,20,29", SHAPE_3D, "empty along axis 0"),  # inverted
        ("1,2,3,10,50,29", SHAPE_3D, "outside the image along axis 1"),  # j1 == size
        ("-1,2,3,10,20,29", SHAPE_3D, "outside the image along axis 0"),
        ("0,0,45,49", (40, 50), "outside the image along axis 0"),
    ],
)
def test_bad_boxes_raise_one_line_prompt_errors(text, shape, match):
    with pytest.raises(PromptError, match=match) as info:
        parse_box(text, shape)
    assert "\n" not in str(info.value) and isinstance(info.value, SegkitError)


def test_slice_outside_the_volume_is_rejected():
    with pytest.raises(PromptError, match="--slice 30 is outside axis 2"):
        parse_box("1,2,3,4", SHAPE_3D, slice_index=30)
    with pytest.raises(PromptError, match="4 integers"):
        parse_box("1,2,3,4,5,6", SHAPE_3D, slice_index=3)


def _oblique_affine() -> np.ndarray:
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1.5, 2.0, 3.0])  # flipped first axis, anisotropic
    affine[:3, 3] = [30.0, -40.0, 10.0]
    return affine


def test_box_mm_covers_the_voxels_it_contains():
    affine = _oblique_affine()
    lo_vox, hi_vox = np.array([5, 8, 4]), np.array([12, 20, 9])
    corners = np.array([[i, j, k, 1.0] for i in (lo_vox[0], hi_vox[0]) for j in (lo_vox[1], hi_vox[1]) for k in (lo_vox[2], hi_vox[2])])
    world = (affine @ corners.T)[:3].T
    box = box_from_mm(world.min(axis=0), world.max(axis=0), affine, SHAPE_3D)
    assert np.all(np.array(box.lo) <= lo_vox) and np.all(np.array(box.hi) >= hi_vox)
    assert box.source == "box-mm"


def test_box_mm_on_an_axis_aligned_image_is_exact_and_clipped():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-40.0, -50.0, -30.0]
    box = parse_box_mm("-30,-46,-20,-10,-6,100", affine, SHAPE_3D)
    assert box.lo == (5, 2, 5) and box.hi == (15, 22, 29)  # z clipped to the last slice


def test_box_mm_outside_the_image_is_rejected():
    with pytest.raises(PromptError, match="outside the image"):
        parse_box_mm("500,500,500,600,600,600", np.eye(4), SHAPE_3D)
    with pytest.raises(PromptError, match="6 numbers"):
        parse_box_mm("1,2,3", np.eye(4), SHAPE_3D)


def test_mask_gives_one_box_per_26_connected_component():
    mask = np.zeros(SHAPE_3D, np.uint8)
    mask[2:5, 3:6, 4:7] = 1
    mask[5, 6, 7] = 1  # touches the first blob only by a corner: same 26-connected component
    mask[20:25, 30:33, 10:20] = 1
    boxes = sorted(boxes_from_mask(mask), key=lambda b: b.lo)
    assert [(b.lo, b.hi) for b in boxes] == [((2, 3, 4), (5, 6, 7)), ((20, 30, 10), (24, 32, 19))]


def test_multilabel_mask_gives_one_box_per_label():
    mask = np.zeros(SHAPE_3D, np.uint8)
    mask[1:3, 1:3, 1:3] = 2
    mask[30:33, 40:42, 20:22] = 2  # same label, far away: still one box
    mask[10:12, 10:12, 10:12] = 5
    boxes = boxes_from_mask(mask)
    assert [(b.lo, b.hi) for b in boxes] == [((1, 1, 1), (32, 41, 21)), ((10, 10, 10), (11, 11, 11))]


def test_empty_mask_is_rejected():
    with pytest.raises(PromptError, match="empty"):
        boxes_from_mask(np.zeros((5, 5, 5)))


def _image(shape, affine):
    from segkit.io.image import Image

    return Image(data=np.zeros(shape, np.float32), affine=affine, path="img.nii.gz")


def test_collect_boxes_reads_a_prompt_mask_file(tmp_path):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    mask = np.zeros(SHAPE_3D, np.uint8)
    mask[3:9, 4:10, 5:8] = 1
    path = tmp_path / "roi.nii.gz"
    nib.save(nib.Nifti1Image(mask, affine), path)
    boxes = collect_boxes(_image(SHAPE_3D, affine), boxes=["0,0,0,5,5,5"], prompt_mask=path)
    assert [(b.source, b.lo, b.hi) for b in boxes] == [("box", (0, 0, 0), (5, 5, 5)), ("prompt-mask", (3, 4, 5), (8, 9, 7))]
    only_slice_6 = collect_boxes(_image(SHAPE_3D, affine), prompt_mask=path, slice_index=6, axis=2)
    assert [(b.lo, b.hi) for b in only_slice_6] == [((3, 4, 6), (8, 9, 6))]


def test_collect_boxes_rejects_a_mask_of_another_shape(tmp_path):
    path = tmp_path / "roi.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), path)
    with pytest.raises(PromptError, match="differs from the image"):
        collect_boxes(_image(SHAPE_3D, np.eye(4)), prompt_mask=path)


def test_collect_boxes_needs_a_prompt():
    with pytest.raises(PromptError, match="needs a prompt"):
        collect_boxes(_image(SHAPE_3D, np.eye(4)))
