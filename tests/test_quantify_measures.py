"""quantify cores: cross-checked with SimpleITK's label filters and hand-computed fat fractions."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from segkit.errors import ImageError
from segkit.quantify.fat import detect_ff_scale, fat_fraction_dixon, fat_fraction_map
from segkit.quantify.intensity import intensity_stats, masked_values
from segkit.quantify.morphometry import corpus_callosum_measures, lesion_measures
from segkit.quantify.subjects import Measures, Subject, quantify_subject
from segkit.quantify.volumes import label_volumes

def _oblique_affine():
    """A rotated (orthonormal directions, as ITK requires), anisotropic voxel grid."""
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.9, 1.5])
    affine[:3, 3] = (-20.0, 10.0, 5.0)
    return affine


OBLIQUE = _oblique_affine()


def _label_and_image(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((16, 14, 10), np.uint8)
    labels[2:9, 3:10, 1:6] = 1
    labels[10:14, 2:6, 4:9] = 3
    raw = rng.integers(-300, 900, size=labels.shape).astype(np.int16)
    image = nib.Nifti1Image(raw, OBLIQUE)
    image.header.set_slope_inter(0.25, -7.5)  # intensities must come out as 0.25 * raw - 7.5
    nib.save(nib.Nifti1Image(labels, OBLIQUE), str(tmp_path / "mask.nii.gz"))
    nib.save(image, str(tmp_path / "img.nii.gz"))
    return labels, raw * 0.25 - 7.5


def test_volume_and_mean_equal_simpleitk(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    labels, expected_image = _label_and_image(tmp_path)
    rows = quantify_subject(Subject(tmp_path / "mask.nii.gz", image=tmp_path / "img.nii.gz"),
                            Measures(volume=True, intensity=True))
    mask_itk = sitk.ReadImage(str(tmp_path / "mask.nii.gz"))
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.Execute(mask_itk)
    stats = sitk.LabelStatisticsImageFilter()
    stats.Execute(sitk.Cast(sitk.ReadImage(str(tmp_path / "img.nii.gz")), sitk.sitkFloat64), mask_itk)
    assert [row["label"] for row in rows] == [1, 3]
    for row in rows:
        label = row["label"]
        assert row["voxel_count"] == shape.GetNumberOfPixels(label)
        assert row["volume_ml"] == pytest.approx(shape.GetPhysicalSize(label) / 1000.0, rel=1e-6)
        assert row["mean"] == pytest.approx(stats.GetMean(label), rel=1e-12)
        assert row["std_ddof1"] == pytest.approx(stats.GetSigma(label), rel=1e-9)
        assert row["min"] == stats.GetMinimum(label) and row["max"] == stats.GetMaximum(label)
        assert row["mean"] == pytest.approx(expected_image[labels == label].mean(), rel=1e-12)


def test_volume_uses_the_determinant_of_the_affine():
    rows = label_volumes(np.ones((2, 3, 4), np.uint8), abs(np.linalg.det(OBLIQUE[:3, :3])), [1, 2])
    assert rows[0]["volume_ml"] == pytest.approx(24 * abs(np.linalg.det(OBLIQUE[:3, :3])) / 1000)
    assert rows[1] == {"label": 2, "status": "empty", "voxel_count": 0, "volume_ml": None}


def test_intensity_window_erosion_and_empty():
    image = np.arange(125, dtype=np.float64).reshape(5, 5, 5)
    mask = np.ones((5, 5, 5), bool)
    assert masked_values(image, mask, erode=1).size == 27
    kept = masked_values(image, mask, window=(10, 19))
    assert kept.min() == 10 and kept.max() == 19 and kept.size == 10
    stats = intensity_stats(np.array([1.0, 2.0, 3.0, 4.0]))
    assert stats["std_ddof1"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1)) and stats["median"] == 2.5
    assert intensity_stats(np.array([]))["mean"] is None


def test_dixon_fat_fraction_by_hand():
    fat = np.array([[10.0, 30.0, 0.0, 0.5], [50.0, -5.0, 1.0, 2.0]])
    water = np.array([[90.0, 10.0, 100.0, 0.4], [50.0, 20.0, 1.0, 2.0]])
    mask = np.array([[True, True, True, True], [True, True, False, False]])
    out = fat_fraction_dixon(fat, water, mask, noise_threshold=5.0)
    # F+W = 100, 40, 100, 0.9(noise), 100, 15; voxel FF 0.1, 0.75, 0, 0.5, clip(-1/3)=0
    assert out["n_voxels_ff"] == 5
    assert out["ff_mean"] == pytest.approx((0.1 + 0.75 + 0.0 + 0.5 + 0.0) / 5)
    assert out["ff_pooled"] == pytest.approx((10 + 30 + 0 + 50 - 5) / (100 + 40 + 100 + 100 + 15))


@pytest.mark.parametrize("scale", [1.0, 100.0, 1000.0])
def test_ff_map_scale_is_detected(scale):
    ff = np.array([0.1, 0.3, 0.9, 0.5]) * scale
    out = fat_fraction_map(ff, np.array([True, True, True, False]))
    assert out["ff_scale"] == f"0-{scale:g}"
    assert out["ff_mean"] == pytest.approx((0.1 + 0.3 + 0.9) / 3)


def test_ff_map_above_1000_is_rejected():
    with pytest.raises(ImageError, match="1000"):
        detect_ff_scale(np.array([5000.0]))


def test_lesion_measures_on_a_box_with_known_size():
    affine = np.diag([0.5, 0.5, 2.0, 1.0])  # RAS: axis 2 is superior-inferior, axis 0 left-right
    lesion = np.zeros((30, 30, 20), bool)
    lesion[4:10, 5:9, 3:8] = True  # 6 x 4 voxels in plane, 5 slices
    lesion[20, 20, 15] = True
    cord = np.zeros_like(lesion)
    cord[2:14, 3:15, :] = True  # 12 x 12 voxels per slice
    rows = lesion_measures(lesion, affine, (0.5, 0.5, 2.0), cord)
    assert len(rows) == 2
    box = rows[0]
    assert box["volume_ml"] == pytest.approx(120 * 0.5 / 1000)
    assert box["length_si_mm"] == pytest.approx(10.0)
    assert box["max_axial_width_mm"] == pytest.approx(3.0)
    assert box["equivalent_diameter_mm"] == pytest.approx(2 * np.sqrt(24 * 0.25 / np.pi))
    assert box["max_axial_damage_ratio"] == pytest.approx(24 / 144)
    assert rows[1]["max_axial_damage_ratio"] == pytest.approx(1 / 144)  # a lesion voxel outside the cord still counts


def test_lesion_axes_follow_the_affine():
    # Axis 0 is superior-inferior here (LPS-like permuted affine).
    affine = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    lesion = np.zeros((10, 10, 10), bool)
    lesion[2:4, 1:8, 5:6] = True
    (row,) = lesion_measures(lesion, affine, (3.0, 1.0, 1.0))
    assert row["length_si_mm"] == pytest.approx(6.0)
    assert row["max_axial_width_mm"] == pytest.approx(7.0)  # axis 1 is left-right


def test_corpus_callosum_midsagittal_area():
    affine = np.diag([1.0, 0.5, 0.5, 1.0])
    cc = np.zeros((9, 20, 20), bool)
    cc[3:6, 5:15, 8:12] = True
    out = corpus_callosum_measures(cc, affine, (1.0, 0.5, 0.5))
    assert out["midsagittal_slice"] == 4
    assert out["midsagittal_area_mm2"] == pytest.approx(40 * 0.25)
    assert out["volume_ml"] == pytest.approx(120 * 0.25 / 1000)
    assert corpus_callosum_measures(np.zeros_like(cc), affine, (1, 0.5, 0.5))["volume_ml"] is None


def test_subject_table_takes_spreadsheet_csv(tmp_path):
    from segkit.quantify.subjects import read_subject_table

    table = tmp_path / "subjects.csv"
    table.write_text(" Subject , MASK ,Image\nP1, p1_mask.nii.gz ,p1.nii.gz,extra cell\n,,\nP2,p2_mask.nii.gz,\n")
    subjects = read_subject_table(table)
    assert [(s.name, s.mask, s.image) for s in subjects] == [
        ("P1", tmp_path / "p1_mask.nii.gz", tmp_path / "p1.nii.gz"),
        ("P2", tmp_path / "p2_mask.nii.gz", None),
    ]
