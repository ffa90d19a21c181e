"""Label maps read without nibabel (segkit.io.nifti_header) equal nibabel's read, or fall back to it.

Every file here is written by nibabel or SimpleITK (some with header bytes patched afterwards
through nibabel's own header dtype, so the offsets are not this module's). The fast path must give
the same data (type and values), affine (bit for bit) and shape as nibabel, and take exactly the
files it is meant to; a bad file must fail with the same message either way.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from segkit.errors import ImageError
from segkit.io.image import load_label_map
from segkit.io.nifti_header import read_simple_header
from segkit.io.nifti_voxels import read_unscaled

ANGLE = np.deg2rad(17.0)
ROTATED = np.array([  # oblique, anisotropic, off-grid origin: nothing in it is a round float32
    [0.8 * np.cos(ANGLE), -1.3 * np.sin(ANGLE), 0.0, -91.37],
    [0.8 * np.sin(ANGLE), 1.3 * np.cos(ANGLE), 0.1, 12.113],
    [0.0, -0.05, 2.7, 40.6],
    [0.0, 0.0, 0.0, 1.0],
])
GRID = np.diag([0.8, 0.8, 1.5, 1.0])  # a qform holds it exactly, as the sform does


def _labels(shape=(9, 7, 5), dtype=np.uint8, top=5):
    return np.random.default_rng(sum(shape)).integers(0, top + 1, shape).astype(dtype)


def _save(path, data, *, header=None, image_class=nib.Nifti1Image, sform=2, qform=0, affine=ROTATED):
    image = image_class(data, None, header=header)
    if sform:
        image.set_sform(affine, code=sform)
    if qform:
        image.set_qform(affine, code=qform)
    if not sform and not qform:
        image.header.set_zooms((1.5,) * data.ndim)  # the base affine then comes from pixdim
    nib.save(image, str(path))
    return path


def _patched(tmp_path, name, data, **fields):
    """A nibabel-written .nii with header fields overwritten in place, saved as `name`."""
    raw = bytearray(_save(tmp_path / "plain.nii", data).read_bytes())
    header = np.ndarray((), dtype=nib.nifti1.header_dtype, buffer=raw)  # nibabel writes native order
    for key, value in fields.items():
        header[key] = value
    path = tmp_path / name
    path.write_bytes(gzip.compress(bytes(raw)) if name.endswith(".gz") else bytes(raw))
    return path


def _big_endian(tmp_path, dtype):
    header = nib.Nifti1Header(endianness=">")
    header.set_data_dtype(np.dtype(dtype).newbyteorder(">"))
    path = _save(tmp_path / "big.nii.gz", _labels(dtype=dtype).astype(np.dtype(dtype).newbyteorder(">")), header=header)
    assert gzip.open(path).read(4) == (348).to_bytes(4, "big")  # the file really is big-endian
    return path


def _with_extension(tmp_path):
    image = nib.Nifti1Image(_labels(), ROTATED)
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"segkit test"))
    nib.save(image, str(tmp_path / "ext.nii.gz"))
    return tmp_path / "ext.nii.gz"


def _simpleitk(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.GetImageFromArray(_labels((9, 7, 5), np.int16).transpose(2, 1, 0))
    rotation = np.array([[np.cos(ANGLE), -np.sin(ANGLE), 0], [np.sin(ANGLE), np.cos(ANGLE), 0], [0, 0, 1]])
    image.SetDirection(tuple(rotation.ravel()))
    image.SetSpacing((0.7, 1.1, 2.9))
    image.SetOrigin((-20.5, 11.0, 42.25))
    sitk.WriteImage(image, str(tmp_path / "itk.nii.gz"))
    header = nib.load(str(tmp_path / "itk.nii.gz")).header
    assert header["sform_code"] > 0 and header["qform_code"] > 0  # ITK writes both
    return tmp_path / "itk.nii.gz"


CASES = {  # name: (writer, fast path expected)
    "uint8": (lambda d: _save(d / "a.nii.gz", _labels()), True),
    "int16": (lambda d: _save(d / "a.nii.gz", _labels(dtype=np.int16, top=900)), True),
    "int32": (lambda d: _save(d / "a.nii.gz", _labels(dtype=np.int32, top=70000)), True),
    "float32": (lambda d: _save(d / "a.nii.gz", _labels(dtype=np.float32)), True),
    "int8": (lambda d: _save(d / "a.nii.gz", _labels(dtype=np.int8)), True),
    "uint16": (lambda d: _save(d / "a.nii.gz", _labels(dtype=np.uint16, top=300)), True),
    "float64": (lambda d: _save(d / "a.nii.gz", _labels(dtype=np.float64)), True),
    "2d_xy1": (lambda d: _save(d / "a.nii.gz", _labels((9, 7, 1))), True),
    "2d_xy": (lambda d: _save(d / "a.nii.gz", _labels((9, 7))), True),
    "4d_trailing_singleton": (lambda d: _save(d / "a.nii.gz", _labels((6, 5, 4, 1))), True),
    "big_endian_int16": (lambda d: _big_endian(d, np.int16), True),
    "big_endian_float32": (lambda d: _big_endian(d, np.float32), True),
    "sform_code_1": (lambda d: _save(d / "a.nii.gz", _labels(), sform=1), True),
    "sform_code_4": (lambda d: _save(d / "a.nii.gz", _labels(), sform=4), True),
    "sform_and_qform": (lambda d: _save(d / "a.nii.gz", _labels(), sform=1, qform=1), True),
    "slope_0_any_intercept": (lambda d: _patched(d, "a.nii.gz", _labels(), scl_slope=0, scl_inter=7), True),
    "slope_1_intercept_0": (lambda d: _patched(d, "a.nii.gz", _labels(), scl_slope=1, scl_inter=0), True),
    "uncompressed_nii_int16": (lambda d: _save(d / "a.nii", _labels(dtype=np.int16)), True),
    "uncompressed_nii_uint8": (lambda d: _save(d / "a.nii", _labels()), True),
    "upper_case_name": (lambda d: _save(d / "A.NII.GZ", _labels()), True),
    "simpleitk": (_simpleitk, True),
    "qform_only": (lambda d: _save(d / "a.nii.gz", _labels(), sform=0, qform=1), False),
    "no_sform_no_qform": (lambda d: _save(d / "a.nii.gz", _labels(), sform=0, qform=0), False),
    "invalid_sform_code": (lambda d: _patched(d, "a.nii.gz", _labels(), sform_code=7, qform_code=1), False),
    "scaled_int16": (lambda d: _patched(d, "a.nii.gz", _labels(dtype=np.int16), scl_slope=2, scl_inter=1), False),
    "intercept_only": (lambda d: _patched(d, "a.nii.gz", _labels(dtype=np.int16), scl_slope=1, scl_inter=3), False),
    "nifti2": (lambda d: _save(d / "a.nii.gz", _labels(), image_class=nib.Nifti2Image), False),
    "extension": (_with_extension, False),
    "bitpix_mismatch": (lambda d: _patched(d, "a.nii.gz", _labels(), bitpix=16), False),
}


def _storage(array):
    """The types along the chain of bases: a mapped .nii ends in np.memmap and mmap.mmap."""
    chain = []
    while array is not None:
        chain.append(type(array))
        array = getattr(array, "base", None)
    return chain


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_fast_path_reads_what_nibabel_reads_or_falls_back(tmp_path, case):
    write, fast_expected = CASES[case]
    path = write(tmp_path)
    facts = read_simple_header(path)
    assert (facts is not None) == fast_expected
    image = nib.load(str(path))
    if facts is not None:
        assert facts.shape == image.shape and facts.offset == image.dataobj.offset
        assert facts.dtype.str == image.get_data_dtype().str  # the byte order too
        assert facts.affine.dtype == np.float64 and facts.affine.tobytes() == image.affine.tobytes()
        voxels, expected = read_unscaled(path, facts), np.asarray(image.dataobj)
        assert voxels.dtype.str == expected.dtype.str and np.array_equal(voxels, expected)
    fast = load_label_map(path, allowed_ndim=(2, 3, 4), header=False)
    slow = load_label_map(path, allowed_ndim=(2, 3, 4))
    assert (fast.header is None) == fast_expected and slow.header is not None
    assert fast.data.dtype == slow.data.dtype and np.array_equal(fast.data, slow.data)
    assert _storage(fast.data) == _storage(slow.data)  # a .nii is mapped as nibabel maps it, not read
    assert fast.shape == slow.shape and fast.original_shape == slow.original_shape
    assert fast.affine.tobytes() == slow.affine.tobytes()


def test_other_headers_fall_back(tmp_path):
    data = _labels()
    pair = tmp_path / "pair.hdr"
    nib.save(nib.Nifti1Pair(data, ROTATED), str(pair))
    assert read_simple_header(pair) is None  # magic "ni1": an .hdr/.img pair
    assert read_simple_header(_patched(tmp_path, "pairmagic.nii", data, magic=b"ni1")) is None
    assert read_simple_header(_patched(tmp_path, "low_offset.nii", data, vox_offset=200)) is None
    assert read_simple_header(_patched(tmp_path, "odd_offset.nii", data, vox_offset=352.5)) is None
    assert read_simple_header(_patched(tmp_path, "nan_offset.nii", data, vox_offset=np.nan)) is None
    assert read_simple_header(_patched(tmp_path, "bool.nii", data, datatype=1, bitpix=1)) is None
    assert read_simple_header(_patched(tmp_path, "rgb.nii", data, datatype=128, bitpix=24)) is None
    dims = [3, 27307, 1, 6, 1, 1, 1, 1]  # FreeSurfer's ico7 shape, which nibabel reshapes
    assert read_simple_header(_patched(tmp_path, "ico7.nii", np.zeros((27307, 1, 6), np.uint8), dim=dims)) is None
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(b"n+1\x00" * 10))
    assert read_simple_header(tmp_path / "short.nii.gz") is None
    (tmp_path / "not_gzip.nii.gz").write_bytes(b"\x00" * 400)
    assert read_simple_header(tmp_path / "not_gzip.nii.gz") is None


def _truncated_gz(tmp_path):
    full = _save(tmp_path / "full.nii.gz", _labels((30, 30, 30), np.int16, top=30000))
    blob = full.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    return cut


def _truncated_nii(tmp_path):
    full = _save(tmp_path / "full.nii", _labels((20, 20, 20)))
    cut = tmp_path / "cut.nii"
    cut.write_bytes(full.read_bytes()[:2000])
    return cut


BAD = {  # name: (writer, words of the message)
    "truncated_gz": (_truncated_gz, "cannot read NIfTI image"),
    "truncated_nii": (_truncated_nii, "truncated"),
    "huge_dims": (lambda d: _patched(d, "a.nii.gz", _labels(), dim=[3, 30000, 30000, 30000, 1, 1, 1, 1]), "declares"),
    "nan_sform": (lambda d: _patched(d, "a.nii.gz", _labels(), srow_x=[np.nan, 0, 0, 0]), "no valid affine"),
    "zero_voxel_axis": (lambda d: _patched(d, "a.nii.gz", _labels(), srow_x=[0, 0, 0, 1], srow_y=[0, 0, 0, 1],
                                           srow_z=[0, 0, 2, 1]), "voxel size is zero"),
    "singular_sform": (lambda d: _patched(d, "a.nii.gz", _labels(), srow_x=[1, 1, 0, 0], srow_y=[0, 0, 0, 0],
                                          srow_z=[0, 0, 1, 0]), "singular"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_fails_the_same_way_on_both_paths(tmp_path, case):
    write, words = BAD[case]
    path = write(tmp_path)
    assert read_simple_header(path) is not None  # the fast path reads the header and checks the rest
    with pytest.raises(ImageError) as fast:
        load_label_map(path, header=False)
    with pytest.raises(ImageError) as slow:
        load_label_map(path)
    assert str(fast.value) == str(slow.value)
    assert words in str(fast.value) and str(path) in str(fast.value)
    assert type(fast.value) is type(slow.value) and fast.value.exit_code == 2


_CHILD = """
import sys
from segkit.cli.main import run
run(sys.argv[1:])
print("nibabel imported:", "nibabel" in sys.modules)
"""


def _eval_in_child(ref, pred):
    argv = ["eval", "--ref", str(ref), "--pred", str(pred), "--labels", "1,2", "--metrics", "dice,hd95,assd,nsd",
            "--surface", "surfel", "--format", "json"]
    result = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, encoding="utf-8",
                            check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    table, _, flag = result.stdout.strip().rpartition("\n")
    return json.loads(table), flag


def test_segkit_eval_never_imports_nibabel_for_plain_nifti_files(tmp_path):
    ref = np.zeros((20, 20, 12), np.uint8)
    ref[5:12, 5:12, 3:8] = 1
    ref[14:17, 14:17, 2:5] = 2
    pred = np.zeros_like(ref)
    pred[6:13, 5:12, 3:9] = 1
    pred[14:17, 15:18, 2:5] = 2
    files = {}
    for name, data in (("ref", ref), ("pred", pred)):
        files[name] = _save(tmp_path / f"{name}.nii.gz", data, sform=1, affine=GRID)
        files[name + "_qform"] = _save(tmp_path / f"{name}_qform.nii.gz", data, sform=0, qform=1, affine=GRID)
    fast, fast_flag = _eval_in_child(files["ref"], files["pred"])
    slow, slow_flag = _eval_in_child(files["ref_qform"], files["pred_qform"])
    assert fast_flag == "nibabel imported: False"
    assert slow_flag == "nibabel imported: True"  # the check can see nibabel: qform-only files need it
    assert fast == slow and [row["status"] for row in fast] == ["ok", "ok"]
