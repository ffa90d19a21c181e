"""One same-grid check with one tolerance: shape, then affine entries to GRID_TOLERANCE_MM."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.errors import ImageError, SegkitError
from segkit.io.grid import GRID_TOLERANCE_MM, check_same_grid, mask_box, same_grid
from segkit.io.image import Image


def _image(shape=(4, 5, 6), shift=0.0, name="a.nii.gz"):
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[0, 3] += shift
    return Image(data=np.zeros(shape, np.float32), affine=affine, path=name)


def test_float32_rounding_is_the_same_grid_and_a_real_shift_is_not():
    reference = _image()
    assert same_grid(_image(shift=GRID_TOLERANCE_MM / 2), reference)
    assert same_grid(_image(shift=GRID_TOLERANCE_MM), reference)  # the tolerance itself still passes
    assert not same_grid(_image(shift=2 * GRID_TOLERANCE_MM), reference)
    assert not same_grid(_image(shape=(4, 5, 7)), reference)


def test_spatial_only_compares_the_first_three_axes():
    dwi, mask = _image(shape=(4, 5, 6, 9)), _image()
    assert not same_grid(dwi, mask)
    assert same_grid(dwi, mask, spatial_only=True)


def test_messages_name_the_file_the_roles_and_the_fix():
    mask = _image(name="mask.nii.gz")
    with pytest.raises(ImageError) as caught:
        check_same_grid(_image(shape=(4, 5, 7), name="t1.nii.gz"), mask, "image",
                        reference_what="the mask", fix="resample it onto the mask grid first")
    assert str(caught.value) == ("t1.nii.gz: image shape (4, 5, 7) differs from the mask mask.nii.gz (4, 5, 6); "
                                 "resample it onto the mask grid first")
    with pytest.raises(ImageError) as caught:
        check_same_grid(_image(shift=0.5, name="t1.nii.gz"), mask, "image",
                        reference_what="the mask", fix="resample it onto the mask grid first")
    assert str(caught.value) == "t1.nii.gz: image affine differs from the mask mask.nii.gz; resample it onto the mask grid first"


def test_callers_choose_the_error_type_and_may_leave_the_role_out():
    class PromptError(SegkitError):
        pass

    with pytest.raises(PromptError, match=r"^b.nii.gz: affine differs from the reference a.nii.gz; resample it"):
        check_same_grid(_image(shift=1.0, name="b.nii.gz"), _image(), "", error=PromptError)


def test_mask_box_is_the_smallest_box_holding_every_voxel():
    mask = np.zeros((7, 6, 5), dtype=np.uint8)
    mask[2, 1, 4] = mask[5, 3, 0] = 1
    assert mask_box(mask) == (slice(2, 6), slice(1, 4), slice(0, 5))
    assert mask[mask_box(mask)].sum() == mask.sum()
    assert mask_box(np.zeros((3, 3), dtype=bool)) is None
