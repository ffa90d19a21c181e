"""ais_ncct preprocessing, each step alone: phantom, HU and the CT check, skull stripping, flip
registration (a known tilt recovered, against the array's own mid-plane as the trivial answer),
CT normalisation and resampling."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.phantoms.head_ct import GREY_RANGE, WHITE_RANGE, make_head_phantom
from segkit.tasks.ais_ncct.ct import NotCTError, apply_brain_mask, check_ct, read_ct, strip_skull, to_hounsfield
from segkit.tasks.ais_ncct.intensity import CTStats, normalise_ct, resample_to_shape, resample_to_spacing
from segkit.tasks.ais_ncct.mirror import flip_register, mirror_left_right


def _side_of_plane(phantom, mask) -> np.ndarray:
    index = np.argwhere(mask)
    world = index * np.diag(phantom.affine)[:3] + phantom.affine[:3, 3]
    return (world - phantom.truth["plane_point_mm"]) @ np.asarray(phantom.truth["plane_normal"])


def test_phantom_varies_and_holds_its_truth():
    phantoms = [make_head_phantom(seed) for seed in range(6)]
    again = make_head_phantom(0)
    assert np.array_equal(again.ct, phantoms[0].ct) and np.array_equal(again.lesion, phantoms[0].lesion)
    assert len({round(p.truth["lesion_ml"], 1) for p in phantoms}) == 6
    assert {p.truth["lesion_side"] for p in phantoms} == {"left", "right"}
    assert len({round(p.truth["yaw_deg"], 2) for p in phantoms}) == 6
    for p in phantoms:
        assert GREY_RANGE[0] <= p.truth["grey_hu"] <= GREY_RANGE[1]
        assert WHITE_RANGE[0] <= p.truth["white_hu"] <= WHITE_RANGE[1]
        assert 3.0 <= p.truth["lesion_drop_hu"] <= 8.0
        distance = _side_of_plane(p, p.lesion > 0)  # every lesion voxel on its own side of the true plane
        assert (np.sign(distance) == (1 if p.truth["lesion_side"] == "right" else -1)).all()


def test_lesion_is_darker_than_the_same_tissue_without_it():
    with_lesion = make_head_phantom(3)
    without = make_head_phantom(3, lesion=False, noise_hu=0.0)
    inside = with_lesion.lesion > 0
    measured = float((with_lesion.ct[inside] - without.ct[inside]).mean())
    assert abs(measured + with_lesion.truth["lesion_drop_hu"]) < 1.0


def test_hounsfield_from_rescale_and_the_ct_check():
    stored = np.array([0, 1024, 2048], dtype=np.uint16)
    assert to_hounsfield(stored, 1.0, -1024.0).tolist() == [-1024.0, 0.0, 1024.0]
    assert to_hounsfield(stored, 0.5, -10.0).tolist() == [-10.0, 502.0, 1014.0]
    phantom = make_head_phantom(1)
    check_ct(phantom.ct)
    with pytest.raises(NotCTError, match="not a head CT in HU"):
        check_ct(phantom.ct + 1024.0)  # stored values without the intercept: no air
    with pytest.raises(NotCTError, match="not a head CT in HU"):
        check_ct(np.abs(phantom.ct) / 4.0)  # MR-like: positive magnitudes
    with pytest.raises(NotCTError, match="not Hounsfield units"):
        check_ct(phantom.ct * 10.0)


def test_dicom_series_rescale_gives_hu(tmp_path):
    import SimpleITK as sitk

    phantom = make_head_phantom(2, shape=(32, 32, 6))
    hu = np.round(phantom.ct).astype(np.int32)
    folder = tmp_path / "dcm"
    folder.mkdir()
    for k in range(hu.shape[2]):
        image = sitk.GetImageFromArray(hu[:, :, k].T[None].astype(np.float32))
        image.SetSpacing((*phantom.truth["spacing_mm"][:2], phantom.truth["spacing_mm"][2]))
        tags = {"0020|000e": "1.2.9", "0020|000d": "1.2", "0008|0060": "CT", "0020|0013": str(k + 1),
                "0020|0032": f"0\\0\\{k * phantom.truth['spacing_mm'][2]}", "0020|0037": "1\\0\\0\\0\\1\\0",
                "0008|0018": f"1.2.9.{k + 1}",
                # stored as unsigned 16-bit: stored = (HU + 1024) / 0.5, so reading must apply the rescale
                "0028|1052": "-1024", "0028|1053": "0.5", "0028|0100": "16", "0028|0101": "16",
                "0028|0102": "15", "0028|0103": "0"}
        for tag, text in tags.items():
            image.SetMetaData(tag, text)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"{k}.dcm"))
        writer.Execute(image)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(folder / "0.dcm"))
    reader.ReadImageInformation()
    assert (reader.GetMetaData("0028|1052").strip(), reader.GetMetaData("0028|0103").strip()) == ("-1024", "0")
    image = read_ct(folder)
    assert image.shape == hu.shape
    # whatever the array order segkit reads DICOM in, the values are HU with slope and intercept applied
    assert np.array_equal(np.sort(image.data.ravel()), np.sort(hu.ravel().astype(np.float32)))


def test_skull_stripping_finds_the_brain():
    for seed in (0, 4):
        phantom = make_head_phantom(seed)
        brain = strip_skull(phantom.ct, phantom.truth["spacing_mm"])
        truth = phantom.brain > 0
        dice = 2 * (brain & truth).sum() / (brain.sum() + truth.sum())
        assert dice > 0.97
        assert brain[phantom.lesion > 0].all()
        assert (phantom.ct[brain] < 300).all()  # no bone kept
        stripped = apply_brain_mask(phantom.ct, brain)
        assert stripped[~brain].max() == 0.0 and np.array_equal(stripped[brain], phantom.ct[brain])
    with pytest.raises(NotCTError, match="no brain tissue"):
        strip_skull(np.full((8, 8, 4), -1000.0), (1.0, 1.0, 1.0))


def test_mirror_is_an_involution_about_the_array_centre():
    volume = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)
    assert np.array_equal(mirror_left_right(mirror_left_right(volume)), volume)
    assert np.array_equal(mirror_left_right(volume)[0], volume[3])


def _plane_errors(phantom, normal, point_array_frame):
    """(angle to the true plane in degrees, mean distance between the planes over the brain in mm)."""
    true_normal = np.asarray(phantom.truth["plane_normal"])
    normal = np.asarray(normal)
    angle = float(np.degrees(np.arccos(min(1.0, abs(normal @ true_normal)))))
    index = np.argwhere(phantom.brain > 0)
    world = index * np.diag(phantom.affine)[:3] + phantom.affine[:3, 3]
    point = np.asarray(point_array_frame) + phantom.affine[:3, 3]
    d_true = (world - phantom.truth["plane_point_mm"]) @ true_normal
    d_est = (world - point) @ normal * np.sign(normal @ true_normal)
    return angle, float(np.abs(d_true - d_est).mean())


def test_flip_registration_recovers_a_known_tilt():
    found, trivial = [], []
    for seed in (1, 2, 5):
        phantom = make_head_phantom(seed, max_tilt_deg=5.0)
        spacing = np.asarray(phantom.truth["spacing_mm"])
        brain = strip_skull(phantom.ct, spacing)
        stripped = apply_brain_mask(phantom.ct, brain)
        result = flip_register(stripped, spacing, brain=brain)
        assert result.mirror.shape == stripped.shape
        assert result.info["residual_hu"] < 0.6 * result.info["residual_hu_before"]
        assert result.info["residual_hu"] <= result.info["residual_hu_rigid"] + 0.05
        found.append(_plane_errors(phantom, result.info["plane_normal"], result.info["plane_point_mm"]))
        centre = (np.asarray(phantom.ct.shape) - 1) / 2.0 * spacing  # the array's own mid-plane
        trivial.append(_plane_errors(phantom, [1.0, 0.0, 0.0], centre))
    found, trivial = np.asarray(found), np.asarray(trivial)
    assert found[:, 0].mean() < 0.5 * trivial[:, 0].mean()  # residual angle
    assert found[:, 1].mean() < 0.5 * trivial[:, 1].mean() and found[:, 1].max() < 2.0  # plane error, mm


def test_ct_normalisation_clips_to_the_training_percentiles_then_z_scores():
    stats = CTStats(mean=30.0, std=10.0, percentile_00_5=5.0, percentile_99_5=70.0)
    assert CTStats.from_dict(stats.to_dict()) == stats
    out = normalise_ct(np.array([-1000.0, 30.0, 40.0, 3000.0]), stats)
    assert out.tolist() == pytest.approx([-2.5, 0.0, 1.0, 4.0])


def test_resampling_to_model_spacing_and_back():
    phantom = make_head_phantom(0, shape=(40, 44, 10))
    spacing = phantom.truth["spacing_mm"]
    fine = resample_to_spacing(phantom.ct, spacing, (spacing[0] / 2, spacing[1] / 2, spacing[2]))
    assert fine.shape == (80, 88, 10)
    mask = resample_to_spacing(phantom.lesion.astype(np.float32), spacing,
                               (spacing[0] / 2, spacing[1] / 2, spacing[2]), order=1)
    back = resample_to_shape(mask, phantom.lesion.shape, (spacing[0] / 2, spacing[1] / 2, spacing[2]), spacing, order=1) >= 0.5
    truth = phantom.lesion > 0
    assert 2 * (back & truth).sum() / (back.sum() + truth.sum()) > 0.95


def test_resampling_follows_nnunet_along_the_slice_axis():
    """nnU-Net's rule, which the model was trained with: a grid with slices more than 3x thicker than
    its pixels is resampled with nearest neighbour across slices (every new slice is an old one)
    and a cubic spline in-plane; an isotropic grid gets the spline along all three axes."""
    rng = np.random.default_rng(0)
    volume = rng.normal(30.0, 5.0, size=(12, 12, 6)).astype(np.float32)
    thinner = resample_to_spacing(volume, (1.0, 1.0, 6.0), (1.0, 1.0, 3.0))
    assert thinner.shape == (12, 12, 12)
    assert all(any(np.allclose(thinner[..., k], volume[..., j], atol=1e-4) for j in range(6)) for k in range(12))
    isotropic = resample_to_spacing(volume, (2.0, 2.0, 2.0), (2.0, 2.0, 1.0))
    assert not any(np.allclose(isotropic[..., 1], volume[..., j], atol=1e-2) for j in range(6))


def test_flip_registration_on_block_averages_finds_the_plane_the_whole_image_finds(monkeypatch):
    """Heads of 256x256 voxels register on blocks of 2x2 (about REGISTRATION_SIDE in-plane: SimpleITK needs
    about 16 bytes per voxel it is given). The plane stays as good as on the whole image, and far
    better than the array's own mid-plane (the trivial answer)."""
    from segkit.tasks.ais_ncct import mirror

    found, whole, trivial = [], [], []
    blocks_side = mirror.REGISTRATION_SIDE
    for seed in (1, 2):
        phantom = make_head_phantom(seed, shape=(256, 256, 16), max_tilt_deg=5.0)
        spacing = np.asarray(phantom.truth["spacing_mm"])
        assert mirror.registration_factors(phantom.ct.shape, spacing, blocks_side) == (2, 2, 1)
        brain = strip_skull(phantom.ct, spacing)
        stripped = apply_brain_mask(phantom.ct, brain)
        for side, errors in ((blocks_side, found), (10_000, whole)):  # 10_000: no blocks, as before
            monkeypatch.setattr(mirror, "REGISTRATION_SIDE", side)
            result = flip_register(stripped, spacing, brain=brain, deformable=False)
            errors.append(_plane_errors(phantom, result.info["plane_normal"], result.info["plane_point_mm"]))
        centre = (np.asarray(phantom.ct.shape) - 1) / 2.0 * spacing
        trivial.append(_plane_errors(phantom, [1.0, 0.0, 0.0], centre))
    found, whole, trivial = (np.mean(e, axis=0) for e in (found, whole, trivial))
    assert np.all(found < 0.5 * trivial)  # angle (degrees) and mean distance between the planes (mm)
    assert np.all(found < whole + 0.25)
