"""The CC diffusion phantom: anatomy, signal model, storage conventions, files, and CSD peaks on it."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from segkit.io.image import Image
from segkit.phantoms.cc_dwi import make_cc_phantom, write_cc_dataset, write_cc_subject
from segkit.phantoms.cc_signal import gradient_scheme, tensor_signal
from segkit.tasks.cc_fodf.inputs import gradient_files_beside, load_cc_input
from segkit.tasks.cc_fodf.peak_frames import reorient_peaks
from segkit.tasks.cc_fodf.peaks import compute_peaks

SMALL = (32, 36, 28)  # 2.5 mm voxels: a small brain whose peaks compute in a few seconds


@pytest.fixture(scope="module")
def phantom():
    return make_cc_phantom(0, shape=SMALL)


def dice(a, b) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_phantom_shapes_and_gradients(phantom):
    assert phantom.dwi.shape == SMALL + (35,) and phantom.dwi.dtype == np.float32
    assert phantom.bvals.tolist() == [0, 0, 0] + [1000] * 32
    np.testing.assert_allclose(np.linalg.norm(phantom.bvecs[3:], axis=1), 1.0, atol=1e-6)
    assert np.all(phantom.bvecs[:3] == 0)
    assert np.isfinite(phantom.dwi).all() and phantom.dwi.min() >= 0  # Rician magnitudes


def test_cc_mask_is_inside_the_brain_and_left_right_symmetric(phantom):
    cc, brain = phantom.cc_mask > 0, phantom.brain_mask > 0
    assert cc.sum() > 300 and not (cc & ~brain).any()
    assert dice(cc, cc[::-1]) > 0.8  # RAS storage: axis 0 is left-right
    # an arch: in the mid-sagittal plane the CC is higher in the middle than at its ends
    midline = cc[SMALL[0] // 2]
    ys = np.flatnonzero(midline.any(axis=1))
    top = lambda y: np.flatnonzero(midline[y]).max()  # noqa: E731
    assert top(ys[len(ys) // 2]) > max(top(ys[0]), top(ys[-1]))


def test_subjects_differ_in_shape_and_noise():
    a, b = make_cc_phantom(1, shape=SMALL), make_cc_phantom(2, shape=SMALL)
    assert dice(a.cc_mask > 0, b.cc_mask > 0) < 0.9
    thin = make_cc_phantom(3, shape=SMALL, cc_thickness_mm=5.0, snr=20)
    thick = make_cc_phantom(3, shape=SMALL, cc_thickness_mm=9.0, snr=20)
    assert thick.cc_mask.sum() > 1.3 * thin.cc_mask.sum()
    quiet = make_cc_phantom(4, shape=SMALL, snr=80)
    noisy = make_cc_phantom(4, shape=SMALL, snr=10)
    background = (quiet.brain_mask == 0)
    assert noisy.dwi[background].std() > 4 * quiet.dwi[background].std()


def test_same_seed_same_subject():
    np.testing.assert_array_equal(make_cc_phantom(5, shape=SMALL).dwi, make_cc_phantom(5, shape=SMALL).dwi)


def test_storage_orientation_changes_the_array_and_fsl_bvecs_consistently():
    ras = make_cc_phantom(6, shape=SMALL, axcodes="RAS")
    las = make_cc_phantom(6, shape=SMALL, axcodes="LAS")
    np.testing.assert_array_equal(las.dwi, ras.dwi[::-1])
    np.testing.assert_array_equal(las.cc_mask, ras.cc_mask[::-1])
    # FSL bvecs are radiological: RAS (flip applied) and LAS (none needed) store the same numbers
    np.testing.assert_allclose(las.bvecs, ras.bvecs, atol=1e-12)
    pir = make_cc_phantom(6, shape=SMALL, axcodes="PIR")
    assert pir.dwi.shape[:3] == (SMALL[1], SMALL[2], SMALL[0])
    assert pir.cc_mask.sum() == ras.cc_mask.sum()


def test_vectorised_tensor_signal_matches_dipy_single_tensor():
    from dipy.core.gradients import gradient_table
    from dipy.sims.voxel import all_tensor_evecs, single_tensor

    bvals, bvecs = gradient_scheme(32, 2, 1000.0, extra_shells=(2000.0,))
    gtab = gradient_table(bvals, bvecs=bvecs)
    for direction in ([1.0, 0, 0], [0.3, -0.5, 0.81]):
        direction = np.asarray(direction) / np.linalg.norm(direction)
        expected = single_tensor(gtab, 1.0, evals=np.array([1.7e-3, 0.3e-3, 0.3e-3]), evecs=all_tensor_evecs(direction))
        np.testing.assert_allclose(tensor_signal(direction, 1.7e-3, 0.3e-3, bvals, bvecs), expected, rtol=1e-5)


@pytest.mark.parametrize("axcodes", ["RAS", "PIR"])
def test_csd_peaks_in_the_cc_run_left_right(axcodes):
    phantom = make_cc_phantom(0, shape=SMALL, axcodes=axcodes)
    dwi = Image(data=phantom.dwi, affine=phantom.affine, path="phantom_dwi.nii.gz")
    result = compute_peaks(dwi, phantom.bvals, phantom.bvecs)  # median_otsu mask, automatic response

    brain = phantom.brain_mask > 0
    assert dice(result.brain_mask, brain) > 0.9
    canonical, reorientation = reorient_peaks(result.peaks, result.affine, "RAS")
    cc = reorientation.to_canonical(phantom.cc_mask) > 0
    first = canonical[..., 0:3][cc]
    cos_x = np.abs(first[:, 0]) / np.maximum(np.linalg.norm(first, axis=1), 1e-12)
    assert (cos_x > np.cos(np.deg2rad(30))).mean() > 0.8


def test_write_subject_files_read_back_as_dwi(tmp_path, phantom):
    files = write_cc_subject(phantom, tmp_path / "sub-001", name="sub-001")
    assert gradient_files_beside(files.dwi) == (files.bval, files.bvec)
    loaded = load_cc_input(files.dwi, files.bval, files.bvec, mask=files.brain_mask)
    assert loaded.kind == "dwi"
    np.testing.assert_allclose(loaded.image.data, phantom.dwi)
    np.testing.assert_allclose(loaded.gradients.bvecs, phantom.bvecs, atol=1e-7)
    np.testing.assert_allclose(loaded.image.affine, phantom.affine)
    np.testing.assert_array_equal(np.asarray(nib.load(files.cc_mask).dataobj), phantom.cc_mask)
    assert not [p for p in files.dwi.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_write_dataset_in_nnunet_layout(tmp_path):
    cases = write_cc_dataset(tmp_path / "data", 2, first_seed=10, shape=(24, 28, 20))
    root = tmp_path / "data"
    assert cases == ["cc_000", "cc_001"]
    for case in cases:
        image = root / "imagesTr" / f"{case}_0000.nii.gz"
        assert gradient_files_beside(image) is not None
        assert load_cc_input(image, *gradient_files_beside(image)).kind == "dwi"
        label = nib.load(root / "labelsTr" / f"{case}.nii.gz")
        assert label.shape == (24, 28, 20) and np.asarray(label.dataobj).any()
        np.testing.assert_allclose(label.affine, nib.load(image).affine)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["labels"] == {"background": 0, "cc": 1}


def test_write_dataset_as_precomputed_peaks(tmp_path):
    write_cc_dataset(tmp_path, 1, first_seed=20, shape=(24, 28, 20), as_peaks=True)
    image = tmp_path / "imagesTr" / "cc_000_0000.nii.gz"
    assert gradient_files_beside(image) is None
    loaded = load_cc_input(image)
    assert loaded.kind == "peaks" and loaded.image.shape == (24, 28, 20, 9) and np.abs(loaded.image.data).max() > 0
    assert json.loads((tmp_path / "dataset.json").read_text())["channel_names"] == {"0": "peaks"}
