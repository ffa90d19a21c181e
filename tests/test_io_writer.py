"""Writing outputs: exact geometry round trips, output names, atomic writes, input protection."""

import itertools
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from segkit.errors import SegkitError
from segkit.io.image import load_image
from segkit.io.writer import (
    atomic_output,
    atomic_write_json,
    atomic_write_text,
    output_path_for,
    save_label_map,
    save_nifti,
)

SHAPE = (5, 6, 7)
ORIENTATIONS = [
    (perm, signs) for perm in itertools.permutations(range(3)) for signs in itertools.product((1, -1), repeat=3)
]
# (sform code, qform code): sform and qform, sform only, qform only
CODE_CASES = [(1, 1), (2, 0), (0, 1), (4, 2)]


def affine_for(perm, signs, spacing=(0.6, 1.1, 2.4), origin=(-31.5, 12.0, 5.25)):
    affine = np.zeros((4, 4))
    for axis in range(3):
        affine[perm[axis], axis] = signs[axis] * spacing[axis]
    affine[:3, 3] = origin
    affine[3, 3] = 1
    return affine


def write_input(path, data, affine, sform_code=1, qform_code=1):
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, code=int(sform_code))
    image.set_qform(affine, code=int(qform_code))
    nib.save(image, str(path))
    return path


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("index", range(48), ids=["".join(nib.aff2axcodes(affine_for(*o))) for o in ORIENTATIONS])
def test_label_map_keeps_shape_affine_and_codes_for_all_48_orientations(tmp_path, index):
    affine = affine_for(*ORIENTATIONS[index])
    sform_code, qform_code = CODE_CASES[index % len(CODE_CASES)]
    data = np.random.default_rng(index).random(SHAPE).astype(np.float32)
    source = write_input(tmp_path / "in.nii.gz", data, affine, sform_code, qform_code)
    original = nib.load(str(source))

    image = load_image(source)
    out = save_label_map(image.data > 0.5, image, tmp_path / "in_seg.nii.gz")

    written = nib.load(str(out))
    assert written.shape == SHAPE
    np.testing.assert_array_equal(written.affine, original.affine)
    np.testing.assert_allclose(written.affine, affine, atol=1e-6)
    assert int(written.header["sform_code"]) == sform_code
    assert int(written.header["qform_code"]) == qform_code
    np.testing.assert_array_equal(written.header.get_sform(), original.header.get_sform())
    np.testing.assert_array_equal(written.header.get_qform(), original.header.get_qform())
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), (data > 0.5).astype(np.uint8))
    assert leftovers(tmp_path) == []


def test_labels_are_stored_unscaled_even_when_the_input_was_scaled(tmp_path):
    raw = np.arange(120, dtype=np.int16).reshape(4, 5, 6)
    source = nib.Nifti1Image(raw, np.diag([2.0, 2.0, 2.0, 1.0]))
    source.header.set_slope_inter(0.25, 100.0)
    source.header["cal_max"] = 500
    nib.save(source, str(tmp_path / "ct.nii.gz"))
    image = load_image(tmp_path / "ct.nii.gz")
    labels = (raw % 3).astype(np.int64)

    written = nib.load(str(save_label_map(labels, image, tmp_path / "seg.nii.gz", dtype=np.int16)))

    assert written.dataobj.slope == 1.0 and written.dataobj.inter == 0.0
    assert written.get_data_dtype() == np.int16
    assert float(written.header["cal_max"]) == 0.0
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), labels)


@pytest.mark.parametrize("stored_shape", [(4, 5), (4, 5, 1)])
def test_2d_input_loads_2d_and_is_written_back_with_its_stored_shape(tmp_path, stored_shape):
    affine = affine_for((1, 0, 2), (-1, 1, 1))
    data = np.random.default_rng(0).random(stored_shape).astype(np.float32)
    source = write_input(tmp_path / "slice.nii.gz", data, affine)

    image = load_image(source)
    assert image.shape == (4, 5)
    written = nib.load(str(save_label_map(image.data > 0.5, image, tmp_path / "slice_seg.nii.gz")))

    assert written.shape == stored_shape
    np.testing.assert_array_equal(written.affine, nib.load(str(source)).affine)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj).reshape(4, 5), image.data > 0.5)


def test_labels_may_be_given_in_the_stored_shape(tmp_path):
    source = write_input(tmp_path / "slice.nii", np.ones((4, 5, 1), dtype=np.float32), np.eye(4))
    image = load_image(source)
    written = nib.load(str(save_label_map(np.ones((4, 5, 1), dtype=bool), image, tmp_path / "o.nii")))
    assert written.shape == (4, 5, 1)


def test_output_of_a_simpleitk_input_has_its_geometry(tmp_path):
    volume = sitk.GetImageFromArray(np.zeros((7, 6, 5), dtype=np.float32))
    volume.SetDirection((0, 0, 1, -1, 0, 0, 0, -1, 0))
    volume.SetSpacing((0.9, 1.4, 2.2))
    volume.SetOrigin((5.0, -6.0, 7.5))
    sitk.WriteImage(volume, str(tmp_path / "vol.mha"))
    image = load_image(tmp_path / "vol.mha")

    written = nib.load(str(save_label_map(np.ones(image.shape, bool), image, tmp_path / "vol_seg.nii.gz")))

    assert written.shape == (5, 6, 7)
    np.testing.assert_allclose(written.affine, image.affine, atol=1e-6)
    assert int(written.header["sform_code"]) == 1 and int(written.header["qform_code"]) == 1
    # and ITK itself reads the output back onto the same grid as the input
    reread = sitk.ReadImage(str(tmp_path / "vol_seg.nii.gz"))
    np.testing.assert_allclose(reread.GetOrigin(), volume.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(reread.GetDirection(), volume.GetDirection(), atol=1e-6)


def test_nifti2_input_gives_nifti2_output(tmp_path):
    affine = affine_for((2, 1, 0), (1, -1, 1))
    nib.save(nib.Nifti2Image(np.ones(SHAPE, dtype=np.float32), affine), str(tmp_path / "n2.nii"))
    image = load_image(tmp_path / "n2.nii")
    written = nib.load(str(save_label_map(image.data > 0, image, tmp_path / "n2_seg.nii.gz")))
    assert isinstance(written, nib.Nifti2Image)
    np.testing.assert_array_equal(written.affine, affine)


def test_wrong_label_shape_or_range_is_a_programming_error(tmp_path):
    image = load_image(write_input(tmp_path / "in.nii.gz", np.ones(SHAPE, np.float32), np.eye(4)))
    with pytest.raises(ValueError, match="shape"):
        save_label_map(np.ones((7, 6, 5)), image, tmp_path / "a.nii.gz")
    with pytest.raises(ValueError, match="outside"):
        save_label_map(np.full(SHAPE, 300), image, tmp_path / "b.nii.gz")
    with pytest.raises(ValueError, match="non-integer"):
        save_label_map(np.full(SHAPE, 0.5), image, tmp_path / "c.nii.gz")
    assert not any(tmp_path.glob("?.nii.gz")) and leftovers(tmp_path) == []


# --- refusing to overwrite the input -------------------------------------------------------------


def test_refuses_to_overwrite_the_input(tmp_path):
    source = write_input(tmp_path / "in.nii.gz", np.ones(SHAPE, np.float32), np.eye(4))
    before = source.read_bytes()
    image = load_image(source)

    with pytest.raises(SegkitError, match="refusing to overwrite") as caught:
        save_label_map(image.data > 0, image, tmp_path / "in.nii.gz")
    assert caught.value.exit_code == 2
    with pytest.raises(SegkitError):
        save_label_map(image.data > 0, image, tmp_path / "sub" / ".." / "in.nii.gz")
    (tmp_path / "link.nii.gz").symlink_to(source)
    with pytest.raises(SegkitError):
        save_label_map(image.data > 0, image, tmp_path / "link.nii.gz")

    assert source.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_non_nifti_output_name_is_refused(tmp_path):
    image = load_image(write_input(tmp_path / "in.nii.gz", np.ones(SHAPE, np.float32), np.eye(4)))
    with pytest.raises(SegkitError, match="NIfTI"):
        save_label_map(image.data > 0, image, tmp_path / "out.nrrd")


# --- atomic writing ------------------------------------------------------------------------------


def test_exception_inside_atomic_output_leaves_no_file(tmp_path):
    target = tmp_path / "qc" / "overlay.png"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(target) as tmp:
            assert tmp.parent == target.parent and tmp.suffix == ".tmp"
            tmp.write_bytes(b"half a png")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("name", ["img_seg.json", "overlay.png", "model.onnx", "img_seg.nii.gz"])
def test_a_write_killed_by_sigkill_leaves_nothing_an_output_glob_takes(tmp_path, name):
    """SIGKILL skips every cleanup: the temp stays, so its name alone must keep it out of globs."""
    import subprocess
    import sys

    script = (
        "import os, signal, sys\n"
        "from segkit.io.writer import atomic_output\n"
        "with atomic_output(sys.argv[1]):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path / name)])
    assert killed.returncode == -9
    assert len(leftovers(tmp_path)) == 1, "the killed write's temp should be left, hidden"
    suffix = "".join(Path(name).suffixes)
    assert list(tmp_path.glob(f"*{suffix}")) == [] and list(tmp_path.glob("*.*")) == list(tmp_path.glob("*.tmp"))


def test_exception_keeps_the_previous_version(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as tmp:
            tmp.write_text("new, but interrupted")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_atomic_output_success_replaces_the_file(tmp_path):
    target = tmp_path / "mask.nii.gz"
    target.write_bytes(b"old")
    with atomic_output(target) as tmp:
        # issue 11: a killed write must not look like an image to a "*.nii.gz" glob
        assert not tmp.name.endswith((".nii.gz", ".nii")) and tmp not in list(tmp_path.glob("*.nii.gz"))
        assert tmp.suffix == ".tmp"
        assert tmp.name.startswith(".mask.nii.gz.") and tmp != target
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_atomic_write_text_and_normal_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "side.json", '{"task": "medsam"}\n')
    finally:
        os.umask(previous)
    assert (tmp_path / "side.json").read_text(encoding="utf-8") == '{"task": "medsam"}\n'
    assert (tmp_path / "side.json").stat().st_mode & 0o777 == 0o644
    assert leftovers(tmp_path) == []


def test_atomic_write_json_is_indented_with_a_final_newline(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]}, sort_keys=True)
    assert (tmp_path / "m.json").read_text(encoding="utf-8") == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert leftovers(tmp_path) == []


def test_save_nifti_writes_any_array_in_scanner_coordinates(tmp_path):
    affine = np.diag([-0.8, 0.8, 2.0, 1.0])
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    written = save_nifti(data, affine, tmp_path / "peaks.nii.gz")
    back = nib.load(str(written))
    assert np.array_equal(back.get_fdata(), data) and np.allclose(back.affine, affine)
    assert (int(back.header["sform_code"]), int(back.header["qform_code"])) == (1, 1)
    assert leftovers(tmp_path) == []


def test_atomic_output_onto_a_directory_is_refused(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(SegkitError, match="directory"):
        with atomic_output(tmp_path / "taken"):
            pass


# --- output names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,expected",
    [
        ("sub-01_T2w.nii.gz", "sub-01_T2w_seg.nii.gz"),
        ("sub-01_T2w.nii", "sub-01_T2w_seg.nii.gz"),
        ("scan.v2.nrrd", "scan.v2_seg.nii.gz"),
        ("scan.nhdr", "scan_seg.nii.gz"),
        ("ct.mha", "ct_seg.nii.gz"),
        ("ct.MHD", "ct_seg.nii.gz"),
        ("IMG.NII.GZ", "IMG_seg.nii.gz"),
    ],
)
def test_output_path_next_to_the_input(tmp_path, name, expected):
    assert output_path_for(tmp_path / name, "_seg") == tmp_path / expected


def test_output_path_for_a_dicom_folder(tmp_path):
    (tmp_path / "series1").mkdir()
    assert output_path_for(f"{tmp_path}/series1/", "_seg") == tmp_path / "series1_seg.nii.gz"


def test_output_path_with_out(tmp_path):
    source = tmp_path / "sub-01_T2w.nii.gz"
    (tmp_path / "existing").mkdir()
    in_existing = output_path_for(source, "_sc_seg", tmp_path / "existing")
    assert in_existing == tmp_path / "existing" / "sub-01_T2w_sc_seg.nii.gz"
    assert output_path_for(source, "_seg", f"{tmp_path}/new.dir/") == tmp_path / "new.dir" / "sub-01_T2w_seg.nii.gz"
    assert output_path_for(source, "_seg", tmp_path / "results") == tmp_path / "results" / "sub-01_T2w_seg.nii.gz"
    assert output_path_for(source, "_seg", tmp_path / "mask.nii") == tmp_path / "mask.nii"
    assert output_path_for(source, "_seg", str(tmp_path / "m.nii.gz")) == tmp_path / "m.nii.gz"
    with pytest.raises(SegkitError, match="NIfTI"):
        output_path_for(source, "_seg", tmp_path / "mask.nrrd")


def test_stale_temps_of_a_killed_write_are_swept_and_fresh_ones_kept(tmp_path):
    """issue 11: a temp older than an hour belongs to a killed process; a fresh one may be in use."""
    stale, fresh = tmp_path / ".m.nii.gz.0000aaaa.tmp", tmp_path / ".m.nii.gz.0000bbbb.tmp"
    stale.write_bytes(b"")
    fresh.write_bytes(b"")
    os.utime(stale, (1, 1))
    atomic_write_text(tmp_path / "m.nii.gz", "x")
    assert not stale.exists() and fresh.exists()
    assert sorted(p.name for p in tmp_path.glob("*.nii.gz")) == ["m.nii.gz"]
