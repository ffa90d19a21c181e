"""cc_fodf input checks: peaks vs DWI, FSL gradient files, shells, SH order. Errors exit 2."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from segkit.errors import SegkitError
from segkit.tasks.cc_fodf.dwi import (
    DwiInputError,
    GradientError,
    Gradients,
    count_unique_directions,
    fsl_bvecs_to_voxel,
    read_fsl_gradients,
    select_single_shell,
    sh_order_for,
    write_fsl_gradients,
)
from segkit.tasks.cc_fodf.inputs import CCInputError, gradient_files_beside, load_cc_input, load_cc_input_auto


def write_nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def write_text(path, text):
    path.write_text(text)
    return path


def dwi_files(tmp_path, bvals, name="sub_dwi"):
    """A 4D DWI with one volume per b-value, and FSL files with distinct unit directions."""
    n = len(bvals)
    rng = np.random.default_rng(0)
    bvecs = rng.normal(size=(n, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    bvecs[np.asarray(bvals) == 0] = 0
    image = write_nifti(tmp_path / f"{name}.nii.gz", rng.uniform(1, 2, (4, 4, 3, n)).astype(np.float32))
    bval = write_text(tmp_path / f"{name}.bval", " ".join(str(b) for b in bvals) + "\n")
    bvec = write_text(tmp_path / f"{name}.bvec", "\n".join(" ".join(f"{v:.6f}" for v in row) for row in bvecs.T) + "\n")
    return image, bval, bvec


def assert_user_error(excinfo, *fragments):
    assert isinstance(excinfo.value, SegkitError) and excinfo.value.exit_code == 2
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_a_3d_t2w_is_refused_with_what_the_task_needs(tmp_path):
    t2w = write_nifti(tmp_path / "sub-001_T2w.nii.gz", np.ones((5, 5, 5), np.float32))
    with pytest.raises(CCInputError) as excinfo:
        load_cc_input(t2w)
    assert_user_error(excinfo, "sub-001_T2w.nii.gz", "needs a 4D peaks file (9 volumes) or a 4D DWI with --bval/--bvec")


def test_a_single_volume_dwi_says_what_a_dwi_needs(tmp_path):
    b0 = write_nifti(tmp_path / "b0.nii.gz", np.ones((5, 5, 5, 1), np.float32))
    bval = write_text(tmp_path / "b0.bval", "0\n")
    bvec = write_text(tmp_path / "b0.bvec", "0\n0\n0\n")
    with pytest.raises(CCInputError) as excinfo:
        load_cc_input(b0, bval, bvec)
    assert_user_error(excinfo, "holds a single volume", "at least one b=0 volume and at least 6")


def test_a_peaks_file_is_read_and_mrtrix_nans_become_zero(tmp_path):
    data = np.ones((4, 5, 6, 9), np.float32)
    data[0, 0, 0, 3:] = np.nan
    result = load_cc_input(write_nifti(tmp_path / "peaks.nii.gz", data))
    assert result.kind == "peaks" and result.gradients is None
    assert result.image.shape == (4, 5, 6, 9) and np.isfinite(result.image.data).all()
    assert result.image.data[0, 0, 0, 3] == 0 and result.image.data[0, 0, 0, 0] == 1
    kind, image, gradients, mask = result  # the tuple form the runner may unpack
    assert kind == "peaks" and mask is None


def test_a_4d_image_of_other_than_9_volumes_without_gradients_is_refused(tmp_path):
    path = write_nifti(tmp_path / "dwi.nii.gz", np.ones((4, 4, 4, 7), np.float32))
    with pytest.raises(CCInputError) as excinfo:
        load_cc_input(path)
    assert_user_error(excinfo, "7 volumes", "9", "--bval/--bvec")


def test_a_dwi_with_matching_gradients_is_accepted(tmp_path):
    image, bval, bvec = dwi_files(tmp_path, [0, 1000, 1000, 1000, 1000, 1000, 1000, 0])
    result = load_cc_input(image, bval, bvec)
    assert result.kind == "dwi" and result.image.shape == (4, 4, 3, 8)
    assert result.gradients.bvals.tolist() == [0, 1000, 1000, 1000, 1000, 1000, 1000, 0]
    np.testing.assert_allclose(np.linalg.norm(result.gradients.bvecs[1:7], axis=1), 1.0)


def test_gradients_beside_the_dwi_are_found(tmp_path):
    image, bval, bvec = dwi_files(tmp_path, [0, 1000, 1000, 1000, 1000, 1000, 1000])
    assert gradient_files_beside(image) == (bval, bvec)
    assert load_cc_input_auto(image).kind == "dwi"


def test_bval_count_differing_from_volumes_is_refused(tmp_path):
    image, _, _ = dwi_files(tmp_path, [0, 1000, 1000, 1000, 1000, 1000, 1000])
    _, bval, bvec = dwi_files(tmp_path, [0, 1000, 1000, 1000, 1000, 1000], name="other")
    with pytest.raises(GradientError) as excinfo:
        load_cc_input(image, bval, bvec)
    assert_user_error(excinfo, "other.bval", "6 b-values", "7 volumes")  # the bval is named, not the bvec


def test_bvec_count_differing_from_bval_is_refused(tmp_path):
    image, bval, _ = dwi_files(tmp_path, [0, 1000, 1000, 1000, 1000, 1000, 1000])
    bvec = write_text(tmp_path / "short.bvec", "1 0 0\n0 1 0\n0 0 1\n")
    with pytest.raises(GradientError) as excinfo:
        load_cc_input(image, bval, bvec)
    assert_user_error(excinfo, "short.bvec", "3 rows")


def test_only_b0_volumes_are_refused(tmp_path):
    image, bval, bvec = dwi_files(tmp_path, [0, 0, 5])
    with pytest.raises(DwiInputError) as excinfo:
        load_cc_input(image, bval, bvec)
    assert_user_error(excinfo, "no diffusion-weighted volumes")


def test_no_b0_volume_is_refused(tmp_path):
    image, bval, bvec = dwi_files(tmp_path, [1000] * 8)
    with pytest.raises(DwiInputError) as excinfo:
        load_cc_input(image, bval, bvec)
    assert_user_error(excinfo, "no b=0 volume")


def test_bval_without_bvec_is_refused(tmp_path):
    image, bval, _ = dwi_files(tmp_path, [0, 1000, 1000])
    with pytest.raises(CCInputError) as excinfo:
        load_cc_input(image, bval=bval)
    assert_user_error(excinfo, "--bval was given without --bvec")


@pytest.mark.parametrize(
    "bval_text, bvec_text, fragment",
    [
        ("0 1000 abc\n", "0 1 0\n0 0 1\n0 0 0\n", "cannot parse"),
        ("0 1000\n1000\n", "0 1 0\n0 0 1\n0 0 0\n", "different lengths"),
        ("0 -1000 1000\n", "0 1 0\n0 0 1\n0 0 0\n", "negative"),
        ("", "0 1 0\n0 0 1\n0 0 0\n", "empty"),
        ("0 1000 1000\n", "0 0 0\n0 0 1\n0 0 0\n", "zero gradient direction"),
        ("0 1000 1000\n", "0 1 nan\n0 0 1\n0 0 0\n", "NaN"),
    ],
)
def test_malformed_gradient_files_are_refused(tmp_path, bval_text, bvec_text, fragment):
    bval = write_text(tmp_path / "x.bval", bval_text)
    bvec = write_text(tmp_path / "x.bvec", bvec_text)
    with pytest.raises(GradientError) as excinfo:
        read_fsl_gradients(bval, bvec)
    assert_user_error(excinfo, fragment)


def test_missing_gradient_file_is_refused(tmp_path):
    with pytest.raises(GradientError) as excinfo:
        read_fsl_gradients(tmp_path / "none.bval", tmp_path / "none.bvec")
    assert_user_error(excinfo, "not found")


def test_bvecs_as_n_rows_of_3_are_accepted_and_round_trip(tmp_path):
    bval = write_text(tmp_path / "x.bval", "0\n1000\n1000\n1000\n")
    bvec = write_text(tmp_path / "x.bvec", "0 0 0\n2 0 0\n0 1 0\n0 0 1\n")
    gradients = read_fsl_gradients(bval, bvec)
    np.testing.assert_allclose(gradients.bvecs, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])  # normalised
    write_fsl_gradients(gradients, tmp_path / "y.bval", tmp_path / "y.bvec")
    assert (tmp_path / "y.bval").read_text().split() == ["0", "1000", "1000", "1000"]
    again = read_fsl_gradients(tmp_path / "y.bval", tmp_path / "y.bvec")
    np.testing.assert_allclose(again.bvecs, gradients.bvecs)


def test_mask_must_match_the_dwi(tmp_path):
    image, bval, bvec = dwi_files(tmp_path, [0, 1000, 1000, 1000, 1000, 1000, 1000])
    wrong = write_nifti(tmp_path / "mask.nii.gz", np.ones((4, 4, 4), np.uint8))
    with pytest.raises(CCInputError) as excinfo:
        load_cc_input(image, bval, bvec, mask=wrong)
    assert_user_error(excinfo, "mask shape")
    good = write_nifti(tmp_path / "good.nii.gz", np.ones((4, 4, 3), np.uint8))
    assert load_cc_input(image, bval, bvec, mask=good).mask.all()


def test_fsl_x_flip_depends_on_the_affine_determinant():
    bvecs = np.array([[0.6, 0.8, 0.0]])
    np.testing.assert_allclose(fsl_bvecs_to_voxel(bvecs, np.diag([2, 2, 2, 1])), [[-0.6, 0.8, 0]])  # RAS: det > 0
    np.testing.assert_allclose(fsl_bvecs_to_voxel(bvecs, np.diag([-2, 2, 2, 1])), [[0.6, 0.8, 0]])  # LAS: det < 0


def test_the_shell_closest_to_b1000_is_selected():
    bvals = np.array([0, 995, 1005, 2000, 3000, 0, 2000, 1000, 5])
    bvecs = np.tile([1.0, 0, 0], (len(bvals), 1))
    keep, shell = select_single_shell(Gradients(bvals.astype(float), bvecs))
    assert shell == pytest.approx(1000.0)
    assert keep.tolist() == [0, 1, 2, 5, 7, 8]
    _, shell = select_single_shell(Gradients(np.array([0.0, 700, 1500]), np.eye(3)))
    assert shell == 700


@pytest.mark.parametrize("n, order", [(6, 2), (14, 2), (15, 4), (27, 4), (28, 6), (30, 6), (44, 6), (45, 8), (64, 8), (300, 8)])
def test_sh_order_is_the_largest_even_order_that_the_directions_support(n, order):
    assert sh_order_for(n) == order


def test_sh_order_needs_six_directions():
    with pytest.raises(ValueError):
        sh_order_for(5)


def test_antipodal_and_repeated_directions_count_once():
    bvecs = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]], float)
    assert count_unique_directions(bvecs) == 3
