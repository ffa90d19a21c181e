"""A single-file NIfTI-1 header read with numpy alone, for the common case only.

Importing nibabel costs about 60 ms, a fifth of a small `segkit eval` process that a shell loop over
a study pays per case, and reading a label map needs only a few header fields. `read_simple_header`
returns them for the case where nibabel (5.x) would read exactly these fields with no repair or
refusal, and None for anything else: the caller then takes nibabel's path, unchanged, which also
words every error about a bad header. The rules mirror nibabel's:

- endianness: nibabel's AnalyzeHeader.guessed_endian (dim[0] in 1..7 read natively: native byte
  order; otherwise swapped); sizeof_hdr must then read 348 (nibabel resets another value silently);
- a single file: magic "n+1\\0", what Nifti1Header.may_contain_header takes for a .nii(.gz) (the
  pair magic "ni1" and NIfTI-2's 540-byte header fall back);
- no extensions (flag byte 348 zero): nibabel parses any there and can refuse malformed ones, so a
  file with extensions falls back although its voxels would read the same from vox_offset;
- the affine is the sform, as Nifti1Header.get_best_affine takes it when sform_code != 0 after
  check_fix has reset codes outside 0..5 to 0: so sform_code 1..5 only (qform-only, no transform
  and invalid codes fall back); get_sform puts srow_x/y/z (float32) into np.eye(4) (float64);
- shape: Nifti1Header.get_data_shape, dim[1..dim[0]]; dim[0] 2..7 and every size >= 1 here, and
  not FreeSurfer's ico7 shape (27307, 1, 6), which nibabel reads as (163842, 1, 1);
- datatype: a plain integer or float type of nibabel's table (bool, complex, RGB, float128 fall
  back), bitpix matching it (nibabel repairs a mismatch silently), byte order of the header;
- vox_offset: a whole number >= 352 (nibabel refuses a lower non-zero one and reads at int(offset));
- unscaled: Nifti1Header.get_slope_inter gives no scaling for slope 0 or not finite, whatever the
  intercept, and ArrayProxy then exposes slope 1.0, inter 0.0; slope 1 with intercept 0 is
  unscaled too. Any other scaling falls back.
"""

from __future__ import annotations

import gzip
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER_BYTES = 348
SINGLE_VOX_OFFSET = 352  # the header and the 4-byte extension flag
SINGLE_MAGIC = b"n+1\x00"
XFORM_CODES = (1, 2, 3, 4, 5)  # nibabel's xform_codes without 0 ("unknown")
FREESURFER_ICO7 = (27307, 1, 6)
_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}
_FIELDS = {  # name: (byte offset, format without byte order)
    "sizeof_hdr": (0, "i4"), "dim": (40, ("i2", 8)), "datatype": (70, "i2"), "bitpix": (72, "i2"),
    "pixdim": (76, ("f4", 8)), "vox_offset": (108, "f4"), "scl_slope": (112, "f4"), "scl_inter": (116, "f4"),
    "sform_code": (254, "i2"), "srow": (280, ("f4", (3, 4))),
}


@dataclass(frozen=True, eq=False)
class NiftiHeader:
    """What segkit reads a simple NIfTI-1 file with. shape, dtype, offset, order, slope and inter
    are named as on nibabel's ArrayProxy, so segkit.io.nifti_voxels reads voxels with either."""

    shape: tuple[int, ...]
    dtype: np.dtype  # the stored type, in the header's byte order
    offset: int
    affine: np.ndarray  # the sform, float64
    pixdim: tuple[float, ...]  # stored voxel sizes along the data axes (unused by an sform affine)
    sform_code: int
    slope: float = 1.0
    inter: float = 0.0
    order: str = "F"


def read_simple_header(path: Path | str) -> NiftiHeader | None:
    """The header of a plain single-file NIfTI-1 image (.nii or .nii.gz), or None for any other file."""
    try:
        block = _first_bytes(Path(path))
        if len(block) < SINGLE_VOX_OFFSET or block[344:348] != SINGLE_MAGIC or block[348] != 0:
            return None
        return _parse(block)
    except Exception:  # noqa: BLE001 - nibabel's path then reads the file, or words the error as it always has
        return None


def _first_bytes(path: Path) -> bytes:
    """The header and the extension flag; for gzip only the first compressed block is inflated."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open  # nibabel: .gz in any case
    with opener(path, "rb") as handle:
        return handle.read(SINGLE_VOX_OFFSET)


def _parse(block: bytes) -> NiftiHeader | None:
    """The rules of the module docstring, in order; any field outside them is None (nibabel's path)."""
    endian = _byte_order(block)
    fields = np.frombuffer(block, dtype=_header_dtype(endian), count=1)[0]
    n_dims = int(fields["dim"][0])
    if int(fields["sizeof_hdr"]) != HEADER_BYTES or not 2 <= n_dims <= 7:
        return None
    shape = tuple(int(n) for n in fields["dim"][1 : n_dims + 1])
    code = int(fields["datatype"])
    if min(shape) < 1 or shape[:3] == FREESURFER_ICO7 or code not in _DTYPES:
        return None
    dtype = np.dtype(_DTYPES[code]).newbyteorder(endian)
    offset = float(fields["vox_offset"])
    if int(fields["bitpix"]) != 8 * dtype.itemsize or offset < SINGLE_VOX_OFFSET or not offset.is_integer():
        return None
    sform_code = int(fields["sform_code"])
    if sform_code not in XFORM_CODES or not _unscaled(float(fields["scl_slope"]), float(fields["scl_inter"])):
        return None
    affine = np.eye(4)
    affine[:3, :] = fields["srow"]
    pixdim = tuple(float(v) for v in fields["pixdim"][1 : n_dims + 1])
    return NiftiHeader(shape=shape, dtype=dtype, offset=int(offset), affine=affine, pixdim=pixdim,
                       sform_code=sform_code)


def _byte_order(block: bytes) -> str:
    """nibabel's guess: dim[0] in 1..7 read in native order means native. (Its tie-break for
    dim[0] == 0 is skipped: such a header has no image and falls back either way.)"""
    native = "<" if sys.byteorder == "little" else ">"
    dim0 = int(np.frombuffer(block, dtype=native + "i2", count=1, offset=40)[0])
    if 1 <= dim0 <= 7:
        return native
    return ">" if native == "<" else "<"


def _header_dtype(endian: str) -> np.dtype:
    formats = [(endian + f[0], f[1]) if isinstance(f, tuple) else endian + f for _, f in _FIELDS.values()]
    return np.dtype({"names": list(_FIELDS), "formats": formats, "offsets": [o for o, _ in _FIELDS.values()],
                     "itemsize": HEADER_BYTES})


def _unscaled(slope: float, inter: float) -> bool:
    """nibabel reads slope 0 or NaN/inf as no scaling (the intercept is then ignored)."""
    if slope == 0 or not np.isfinite(slope):
        return True
    return slope == 1.0 and inter == 0.0
