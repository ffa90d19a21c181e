"""Reading images: NIfTI scaling, SimpleITK formats and DICOM geometry, squeezing, and bad input."""

import gzip
import locale
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from segkit.errors import ImageError
from segkit.io.image import load_image, load_label_map

MARKER = (2, 5, 1)


def save_nifti(path, data, affine=None, **header_fields):
    affine = np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine
    image = nib.Nifti1Image(data, affine)
    for key, value in header_fields.items():
        image.header[key] = value
    nib.save(image, str(path))
    return path


def marked_volume(shape=(6, 8, 4)):
    volume = np.zeros(shape, dtype=np.int16)
    volume[MARKER] = 100
    volume[0, 0, 0] = 7  # a second, different value so a flip would be seen
    return volume


def marked_sitk_volume():
    """A SimpleITK image with non-trivial LPS geometry: permuted, flipped, oblique, anisotropic."""
    image = sitk.GetImageFromArray(marked_volume().transpose(2, 1, 0))  # SimpleITK wants (k, j, i)
    angle = np.deg2rad(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    permutation = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float)  # right-handed (det +1)
    image.SetDirection(tuple((rotation @ permutation).ravel()))
    image.SetSpacing((0.8, 1.7, 3.1))
    image.SetOrigin((-20.5, 11.0, 42.25))
    return image


def ras_world_of(sitk_image, index):
    """SimpleITK's own index -> physical point (LPS), turned into RAS."""
    x, y, z = sitk_image.TransformIndexToPhysicalPoint(tuple(int(v) for v in index))
    return np.array([-x, -y, z])


def world(affine, ijk):
    return affine[:3, :3] @ np.asarray(ijk, dtype=float) + affine[:3, 3]


# --- NIfTI -------------------------------------------------------------------------------------


def test_nifti_reads_float32_with_geometry(tmp_path):
    affine = np.array([[0, 0, -2.5, 10], [1.5, 0, 0, -4], [0, 0.5, 0, 3], [0, 0, 0, 1]], dtype=float)
    path = save_nifti(tmp_path / "a.nii.gz", marked_volume(), affine)

    image = load_image(path)

    assert image.data.dtype == np.float32
    assert image.shape == (6, 8, 4) and image.original_shape == (6, 8, 4)
    np.testing.assert_array_equal(image.affine, affine)
    assert image.spacing == pytest.approx((1.5, 0.5, 2.5))
    assert image.path == path
    assert image.data[MARKER] == 100
    assert isinstance(image.header, nib.Nifti1Header)


def test_nifti_scaling_is_applied_exactly_in_float64(tmp_path):
    raw = np.arange(-60, 60, dtype=np.int16).reshape(4, 5, 6)
    image = nib.Nifti1Image(raw, np.eye(4))
    image.header.set_slope_inter(0.1, -3.0)
    nib.save(image, str(tmp_path / "scaled.nii"))

    loaded = load_image(tmp_path / "scaled.nii", dtype=np.float64)

    slope, inter = np.float64(np.float32(0.1)), np.float64(np.float32(-3.0))  # stored as float32
    assert loaded.data.dtype == np.float64
    np.testing.assert_allclose(loaded.data, raw * slope + inter, rtol=1e-15, atol=0)
    assert load_image(tmp_path / "scaled.nii").data.dtype == np.float32


def test_2d_nifti_loads_as_2d(tmp_path):
    path = save_nifti(tmp_path / "flat.nii.gz", np.arange(12, dtype=np.float32).reshape(3, 4))
    image = load_image(path)
    assert image.shape == (3, 4) and image.original_shape == (3, 4)
    assert len(image.spacing) == 2


def test_trailing_singleton_axes_are_squeezed_to_the_smallest_allowed_ndim(tmp_path):
    slice_path = save_nifti(tmp_path / "slice.nii.gz", np.ones((3, 4, 1), dtype=np.float32))
    volume_path = save_nifti(tmp_path / "vol.nii.gz", np.ones((3, 4, 5, 1), dtype=np.float32))

    assert load_image(slice_path).shape == (3, 4)
    assert load_image(slice_path).original_shape == (3, 4, 1)
    assert load_image(slice_path, allowed_ndim=(3,)).shape == (3, 4, 1)
    assert load_image(volume_path).shape == (3, 4, 5)
    assert load_image(volume_path, allowed_ndim=(4,)).shape == (3, 4, 5, 1)


# --- SimpleITK formats and DICOM ---------------------------------------------------------------


@pytest.mark.parametrize("extension", [".nrrd", ".nhdr", ".mha", ".mhd"])
def test_simpleitk_formats_match_the_nifti_that_itk_writes(tmp_path, extension):
    volume = marked_sitk_volume()
    sitk.WriteImage(volume, str(tmp_path / f"vol{extension}"))
    sitk.WriteImage(volume, str(tmp_path / "vol.nii.gz"))  # ITK does its own LPS -> RAS here

    image = load_image(tmp_path / f"vol{extension}")
    reference = load_image(tmp_path / "vol.nii.gz")

    assert image.header is None
    np.testing.assert_array_equal(image.data, reference.data)
    np.testing.assert_allclose(image.affine, reference.affine, atol=1e-5)
    marker = np.unravel_index(np.argmax(image.data), image.shape)
    assert marker == MARKER
    np.testing.assert_allclose(world(image.affine, marker), ras_world_of(volume, MARKER), atol=1e-9)
    np.testing.assert_allclose(world(image.affine, marker), world(reference.affine, marker), atol=1e-4)
    assert image.spacing == pytest.approx((0.8, 1.7, 3.1))


def test_2d_nrrd_loads_as_2d_with_its_geometry(tmp_path):
    plane = sitk.GetImageFromArray(np.arange(12, dtype=np.float32).reshape(3, 4))  # (j, i)
    plane.SetSpacing((0.5, 2.0))
    plane.SetOrigin((3.0, -4.0))
    sitk.WriteImage(plane, str(tmp_path / "plane.nrrd"))

    image = load_image(tmp_path / "plane.nrrd")

    assert image.shape == (4, 3)
    assert image.data[3, 0] == 3.0  # i=3, j=0
    assert image.spacing == pytest.approx((0.5, 2.0))
    np.testing.assert_allclose(world(image.affine, (1, 1, 0)), [-3.5, 2.0, 0.0])  # LPS (3.5, -2) flipped to RAS


def write_dicom_series(volume, folder):
    """Write one DICOM file per slice with the tags a series reader needs to rebuild the geometry.

    SimpleITK's DICOM writer (GDCM) switches the process locale to "C"; it is restored so that
    later tests in this process still decode subprocess output and files as UTF-8.
    """
    saved_locale = locale.setlocale(locale.LC_ALL)
    try:
        _write_dicom_slices(volume, folder)
    finally:
        locale.setlocale(locale.LC_ALL, saved_locale)


def _write_dicom_slices(volume, folder):
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = volume.GetDirection()
    series_tags = {
        "0008|0060": "CT",
        "0008|0008": "DERIVED\\SECONDARY",
        "0020|000d": "1.2.826.0.1.3680043.2.1125.1.101",
        "0020|000e": "1.2.826.0.1.3680043.2.1125.1.101.1",
        "0020|0037": "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
    }
    for k in range(volume.GetDepth()):
        plane = volume[:, :, k]
        for tag, value in series_tags.items():
            plane.SetMetaData(tag, value)
        plane.SetMetaData("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.101.1.{k + 1}")
        plane.SetMetaData("0020|0013", str(k + 1))
        plane.SetMetaData("0020|0032", "\\".join(str(v) for v in volume.TransformIndexToPhysicalPoint((0, 0, k))))
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)


def test_dicom_series_folder_has_the_same_world_geometry(tmp_path):
    volume = marked_sitk_volume()
    write_dicom_series(volume, tmp_path / "series1")
    sitk.WriteImage(volume, str(tmp_path / "reference.nii.gz"))

    image = load_image(tmp_path / "series1")
    reference = load_image(tmp_path / "reference.nii.gz")

    assert image.path == tmp_path / "series1"
    assert image.shape == reference.shape
    marker = np.unravel_index(np.argmax(image.data), image.shape)
    assert image.data[marker] == 100
    np.testing.assert_allclose(world(image.affine, marker), ras_world_of(volume, MARKER), atol=1e-3)
    np.testing.assert_allclose(image.affine, reference.affine, atol=1e-3)
    np.testing.assert_array_equal(image.data, reference.data)


def test_folder_without_dicom_is_an_image_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no DICOM series") as caught:
        load_image(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(caught.value)


# --- errors ------------------------------------------------------------------------------------


def assert_one_line_naming(error, path):
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(ImageError, match="not found") as caught:
        load_image(path)
    assert_one_line_naming(caught, path)


def test_truncated_nii_gz(tmp_path):
    full = save_nifti(tmp_path / "full.nii.gz", np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    blob = full.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ImageError) as caught:
        load_image(cut)
    assert_one_line_naming(caught, cut)


def test_truncated_uncompressed_nii(tmp_path):
    full = save_nifti(tmp_path / "full.nii", np.ones((20, 20, 20), dtype=np.float32))
    cut = tmp_path / "cut.nii"
    cut.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(ImageError) as caught:
        load_image(cut)
    assert_one_line_naming(caught, cut)


@pytest.mark.parametrize("name", ["garbage.nii.gz", "garbage.nii", "garbage.nrrd", "garbage.mha", "garbage.xyz"])
def test_garbage_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(3).bytes(5000))
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert_one_line_naming(caught, path)


def test_gzip_of_garbage_named_nii_gz(tmp_path):
    path = tmp_path / "not_nifti.nii.gz"
    path.write_bytes(gzip.compress(b"hello, this is not a NIfTI header" * 20))
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert_one_line_naming(caught, path)


def test_4d_where_3d_is_expected(tmp_path):
    path = save_nifti(tmp_path / "dwi.nii.gz", np.zeros((3, 4, 5, 2), dtype=np.float32))
    with pytest.raises(ImageError, match="4D") as caught:
        load_image(path)
    assert_one_line_naming(caught, path)
    assert load_image(path, allowed_ndim=(3, 4)).shape == (3, 4, 5, 2)


def test_2d_where_only_3d_is_allowed(tmp_path):
    path = save_nifti(tmp_path / "flat.nii.gz", np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ImageError, match="2D") as caught:
        load_image(path, allowed_ndim=(3,))
    assert_one_line_naming(caught, path)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nonfinite_voxel(tmp_path, bad_value):
    data = np.ones((3, 4, 5), dtype=np.float32)
    data[1, 2, 3] = bad_value
    path = save_nifti(tmp_path / "bad.nii.gz", data)
    with pytest.raises(ImageError, match="NaN or infinite") as caught:
        load_image(path)
    assert_one_line_naming(caught, path)
    assert not np.isfinite(load_image(path, allow_nonfinite=True).data[1, 2, 3])


def test_non_float_dtype_is_a_programming_error(tmp_path):
    path = save_nifti(tmp_path / "a.nii.gz", np.ones((3, 4, 5), dtype=np.float32))
    with pytest.raises(TypeError):
        load_image(path, dtype=np.int16)


# --- label maps --------------------------------------------------------------------------------


def test_label_map_from_float_file_with_integer_values(tmp_path):
    labels = np.zeros((4, 5, 6), dtype=np.float32)
    labels[1:3, 1:3, 1:3] = 2
    loaded = load_label_map(save_nifti(tmp_path / "lab.nii.gz", labels))
    assert loaded.data.dtype == np.uint8
    np.testing.assert_array_equal(loaded.data, labels.astype(np.uint8))


def test_label_map_with_large_labels_is_int32(tmp_path):
    labels = np.zeros((4, 5, 6), dtype=np.int32)
    labels[0, 0, 0] = 70000
    loaded = load_label_map(save_nifti(tmp_path / "lab.nii.gz", labels))
    assert loaded.data.dtype == np.int32 and loaded.data.max() == 70000


def test_label_map_read_from_nrrd(tmp_path):
    labels = sitk.GetImageFromArray(marked_volume().transpose(2, 1, 0).astype(np.uint16))
    sitk.WriteImage(labels, str(tmp_path / "l.nrrd"))
    loaded = load_label_map(tmp_path / "l.nrrd")
    assert loaded.data.dtype == np.uint8 and loaded.data[MARKER] == 100


@pytest.mark.parametrize("value,reason", [(0.5, "non-integer"), (-1.0, "negative"), (np.nan, "NaN")])
def test_bad_label_values(tmp_path, value, reason):
    labels = np.zeros((4, 5, 6), dtype=np.float32)
    labels[2, 2, 2] = value
    path = save_nifti(tmp_path / "lab.nii.gz", labels)
    with pytest.raises(ImageError, match=reason) as caught:
        load_label_map(path)
    assert_one_line_naming(caught, path)


def test_importing_the_io_layer_stays_light():
    code = "import sys, segkit.io; print(sorted(m for m in ('torch', 'SimpleITK') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("keep_integers", [True, False])
def test_a_nii_gz_is_read_without_a_second_copy_of_the_volume(tmp_path, keep_integers, monkeypatch):
    """nibabel's one readinto makes Python 3.11's gzip hold the whole decompressed volume as bytes
    beside the array; segkit reads it in chunks. Same values and types as nibabel's read."""
    import tracemalloc

    from segkit.io import nifti_voxels

    data = np.random.default_rng(5).integers(-1024, 3000, (96, 80, 70)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 1.5, 1.0])), str(tmp_path / "ct.nii.gz"))
    expected = nib.load(str(tmp_path / "ct.nii.gz"))
    expected = np.asarray(expected.dataobj) if keep_integers else expected.get_fdata(dtype=np.float32)
    monkeypatch.setattr(nifti_voxels, "_CHUNK_BYTES", 1 << 16)  # far below this volume's 1 MB
    tracemalloc.start()
    image = load_image(tmp_path / "ct.nii.gz", keep_integers=keep_integers)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert image.data.dtype == expected.dtype and np.array_equal(image.data, expected)
    assert peak < 1.4 * image.data.nbytes  # nibabel's read: the array and the bytes, twice the volume
