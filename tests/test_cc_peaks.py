"""cc_fodf peaks: vector frames, reorientation to the canonical RAS axes, and dipy CSD peaks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from segkit.io.image import Image
from segkit.io.orientation import reorientation_to
from segkit.phantoms.cc_signal import gradient_scheme, tensor_signal
from segkit.tasks.cc_fodf.dwi import voxel_bvecs_to_fsl
from segkit.tasks.cc_fodf.inputs import load_cc_input
from segkit.tasks.cc_fodf.peak_frames import (
    peaks_from_canonical,
    peaks_voxel_to_world,
    peaks_world_to_voxel,
    reorient_peaks,
    voxel_axes_rotation,
)
from segkit.tasks.cc_fodf.peaks import compute_peaks

AXCODES = ["RAS", "LAS", "LPS", "PIR", "SAL", "ILP", "ARI"]


def affine_for(axcodes: str, zooms=(2.0, 2.5, 3.0), shape=(5, 6, 7), oblique_deg: float = 0.0) -> np.ndarray:
    """An affine whose array axes point along `axcodes`, optionally rotated about z (oblique)."""
    base = np.diag([*zooms, 1.0])
    move = reorientation_to(base, shape, axcodes)
    affine = move.canonical_affine.copy()
    angle = np.deg2rad(oblique_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine[:3, :3] = rotation @ affine[:3, :3]
    affine[:3, 3] = [-10.0, 20.0, 5.0]
    return affine


def spatial_shape_for(axcodes: str, shape=(5, 6, 7)) -> tuple[int, ...]:
    return reorientation_to(np.eye(4), shape, axcodes).canonical_shape


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between axes (sign-free), in degrees, along the last axis."""
    cos = np.abs((a * b).sum(-1)) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, 0, 1)))


# ------------------------------------------------------------------------------ frames


@pytest.mark.parametrize("axcodes", AXCODES)
@pytest.mark.parametrize("oblique", [0.0, 12.0])
def test_left_right_fibre_points_along_canonical_axis_0_for_any_storage(axcodes, oblique):
    shape = spatial_shape_for(axcodes)
    affine = affine_for(axcodes, oblique_deg=oblique)
    world_fibre = np.array([1.0, 0.0, 0.0])
    voxel_fibre = voxel_axes_rotation(affine).T @ world_fibre  # what dipy would report
    peaks = np.zeros(shape + (9,), np.float32)
    peaks[..., 0:3] = 0.8 * voxel_fibre
    peaks[..., 3:6] = 0.3 * (voxel_axes_rotation(affine).T @ np.array([0.0, 0.0, 1.0]))

    canonical, _ = reorient_peaks(peaks, affine, "RAS", frame="voxel")

    assert canonical.shape == (5, 6, 7, 9)  # the RAS grid the storage was derived from
    first, second = canonical[..., 0:3], canonical[..., 3:6]
    tolerance = 1e-5 if oblique == 0 else None
    if tolerance is not None:  # axis-aligned storage: exactly the canonical axes, magnitudes kept
        np.testing.assert_allclose(np.abs(first), np.broadcast_to([0.8, 0, 0], first.shape), atol=tolerance)
        np.testing.assert_allclose(np.abs(second), np.broadcast_to([0, 0, 0.3], second.shape), atol=tolerance)
    else:  # oblique: canonical axis 0 is the nearest array axis, within the obliquity
        assert np.all(angle_deg(first, np.array([1.0, 0, 0])) < oblique + 1e-3)
        np.testing.assert_allclose(np.linalg.norm(first, axis=-1), 0.8, rtol=1e-5)


@pytest.mark.parametrize("axcodes", AXCODES)
def test_world_frame_input_gives_the_same_canonical_peaks_as_voxel_frame(axcodes):
    rng = np.random.default_rng(3)
    shape = spatial_shape_for(axcodes)
    affine = affine_for(axcodes, oblique_deg=7.0)
    voxel_peaks = rng.normal(size=shape + (9,)).astype(np.float32)
    world_peaks = peaks_voxel_to_world(voxel_peaks, affine)

    from_voxel, _ = reorient_peaks(voxel_peaks, affine, frame="voxel")
    from_world, reorientation = reorient_peaks(world_peaks, affine, frame="world")

    np.testing.assert_allclose(from_voxel, from_world, atol=1e-5)
    np.testing.assert_allclose(peaks_world_to_voxel(world_peaks, affine), voxel_peaks, atol=1e-5)
    np.testing.assert_allclose(peaks_from_canonical(from_world, reorientation), world_peaks, atol=1e-5)
    np.testing.assert_allclose(peaks_from_canonical(from_world, reorientation, frame="voxel"), voxel_peaks, atol=1e-5)


def test_ras_storage_leaves_world_peaks_unchanged():
    peaks = np.random.default_rng(0).normal(size=(3, 4, 5, 9)).astype(np.float32)
    affine = np.diag([1.25, 1.25, 1.25, 1.0])
    canonical, reorientation = reorient_peaks(peaks, affine)
    assert reorientation.is_identity
    np.testing.assert_allclose(canonical, peaks, atol=1e-6)


def test_reorient_peaks_rejects_a_non_peaks_array():
    with pytest.raises(ValueError, match="9"):
        reorient_peaks(np.zeros((3, 3, 3, 6)), np.eye(4))


# --------------------------------------------------------------------- dipy CSD peaks


def uniform_fibre_dwi(world_fibre, axcodes: str, shape=(6, 6, 6), snr_seed=None):
    """A DWI of one fibre direction everywhere, stored in `axcodes`, with FSL bvecs for that storage."""
    affine = affine_for(axcodes, zooms=(2.0, 2.0, 2.0), shape=shape)
    bvals, world_bvecs = gradient_scheme(32, 2, 1000.0)
    voxel_bvecs = world_bvecs @ voxel_axes_rotation(affine)
    world_fibre = np.asarray(world_fibre, float) / np.linalg.norm(world_fibre)
    signal = 1000.0 * tensor_signal(world_fibre, 1.7e-3, 0.3e-3, bvals, world_bvecs)
    spatial = spatial_shape_for(axcodes, shape)
    data = np.broadcast_to(signal, tuple(spatial) + signal.shape).astype(np.float32).copy()
    if snr_seed is not None:
        data += np.random.default_rng(snr_seed).normal(0, 20.0, data.shape).astype(np.float32)
    image = Image(data=data, affine=affine, path="fibre_dwi.nii.gz")
    return image, bvals, voxel_bvecs_to_fsl(voxel_bvecs, affine)


@pytest.mark.parametrize("axcodes", ["RAS", "LAS", "PIR"])
@pytest.mark.parametrize("fibre", [(1.0, 1.0, 0.0), (0.6, 0.0, 0.8)])
def test_dipy_peak_of_a_known_fibre_comes_out_in_world_frame(axcodes, fibre):
    dwi, bvals, fsl_bvecs = uniform_fibre_dwi(fibre, axcodes)
    result = compute_peaks(dwi, bvals, fsl_bvecs, np.ones(dwi.shape[:3]))

    first = result.peaks[..., 0:3].reshape(-1, 3)
    assert np.all(np.linalg.norm(first, axis=1) > 0)
    assert np.all(angle_deg(first, np.array(fibre)) < 8.0)  # the sphere's resolution is ~7 degrees
    assert np.abs(result.peaks[..., 3:]).max() == 0  # a single fibre has no second peak


def test_ignoring_the_fsl_x_flip_would_misplace_an_oblique_fibre():
    """The check above can fail: on RAS storage, bvecs taken as voxel axes mirror the fibre."""
    dwi, bvals, fsl_bvecs = uniform_fibre_dwi((1.0, 1.0, 0.0), "RAS")
    wrong = compute_peaks(dwi, bvals, fsl_bvecs, np.ones(dwi.shape[:3]), bvecs_frame="voxel")
    first = wrong.peaks[..., 0:3].reshape(-1, 3)
    assert np.all(angle_deg(first, np.array([1.0, -1.0, 0.0])) < 8.0)


@pytest.mark.parametrize("axcodes", ["LPS", "SAL"])
def test_dipy_left_right_fibre_is_canonical_axis_0_after_reorientation(axcodes):
    dwi, bvals, fsl_bvecs = uniform_fibre_dwi((1.0, 0.0, 0.0), axcodes, snr_seed=1)
    result = compute_peaks(dwi, bvals, fsl_bvecs, np.ones(dwi.shape[:3]))
    canonical, _ = reorient_peaks(result.peaks, result.affine, "RAS")
    first = canonical[..., 0:3].reshape(-1, 3)
    assert np.all(angle_deg(first, np.array([1.0, 0, 0])) < 15.0)


def test_multi_shell_uses_the_shell_closest_to_b1000_and_sh_order_from_directions():
    dwi, bvals, fsl_bvecs = uniform_fibre_dwi((0.0, 1.0, 0.0), "RAS")
    # add a b=2500 shell whose signal would not fit a b=1000 response
    extra = np.asarray(dwi.data[..., 2:]) ** 2.5 / 1000.0**1.5
    multi = Image(data=np.concatenate([dwi.data, extra], axis=3), affine=dwi.affine, path=dwi.path)
    result = compute_peaks(
        multi, np.concatenate([bvals, np.full(32, 2500.0)]), np.concatenate([fsl_bvecs, fsl_bvecs[2:]]),
        np.ones(dwi.shape[:3]),
    )
    assert result.shell_bvalue == pytest.approx(1000.0)
    assert result.n_directions == 32 and result.sh_order == 6  # 28 <= 32 < 45
    assert np.all(angle_deg(result.peaks[..., 0:3].reshape(-1, 3), np.array([0, 1.0, 0])) < 8.0)


def test_peaks_are_fit_only_inside_the_mask_and_saved_atomically(tmp_path):
    dwi, bvals, fsl_bvecs = uniform_fibre_dwi((0.0, 0.0, 1.0), "LAS")
    dwi.path = tmp_path / "fibre_dwi.nii.gz"
    mask = np.zeros(dwi.shape[:3], bool)
    mask[1:4, 2:5, 1:3] = True
    out = tmp_path / "fibre_dwi_peaks.nii.gz"

    result = compute_peaks(dwi, bvals, fsl_bvecs, mask, save_to=out)

    assert result.saved_to == out and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert np.abs(result.peaks[~mask]).max() == 0
    assert np.all(np.linalg.norm(result.peaks[mask][:, :3], axis=1) > 0)
    saved = nib.load(out)
    assert saved.shape == dwi.shape[:3] + (9,) and saved.get_data_dtype() == np.float32
    np.testing.assert_allclose(saved.affine, dwi.affine, atol=1e-5)
    reread = load_cc_input(out)
    assert reread.kind == "peaks"
    np.testing.assert_allclose(reread.image.data, result.peaks, atol=1e-6)


def test_median_otsu_mask_is_used_when_none_is_given():
    dwi, bvals, fsl_bvecs = uniform_fibre_dwi((1.0, 0.0, 0.0), "RAS", shape=(14, 14, 14))
    data = np.zeros_like(dwi.data)
    data[3:11, 3:11, 3:11] = dwi.data[3:11, 3:11, 3:11]  # a 'head' in an empty field of view
    dwi.data = data + np.random.default_rng(0).rayleigh(5.0, data.shape).astype(np.float32)
    result = compute_peaks(dwi, bvals, fsl_bvecs)
    assert result.brain_mask[7, 7, 7] and not result.brain_mask[0, 0, 0]
    assert np.abs(result.peaks[0:2]).max() == 0
    assert np.all(angle_deg(result.peaks[5:9, 5:9, 5:9, 0:3].reshape(-1, 3), np.array([1.0, 0, 0])) < 8.0)
