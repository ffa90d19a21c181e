"""Write outputs atomically: label maps as NIfTI with the input's exact shape and geometry, text, JSON.

Every write goes to a hidden temp file in the destination folder, is fsynced, then renamed over
the destination with os.replace, so a crash never leaves a partial file. Files get the usual
permissions (0666 less the umask), so shared caches and QC pictures stay readable by others. The
input is never overwritten.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from segkit.errors import SegkitError
from segkit.io.image import Image, is_nifti_path

if TYPE_CHECKING:
    import nibabel as nib

# Longest first, so ".nii.gz" wins over ".gz"-less ".nii".
INPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
OUTPUT_SUFFIX = ".nii.gz"


def output_stem(input_path: Path | str) -> str:
    """The input's name without its image extension; a DICOM folder's own name."""
    path = Path(input_path)
    name = path.name
    if path.is_dir():
        return name
    lowered = name.lower()
    for known in INPUT_SUFFIXES:
        if lowered.endswith(known) and len(name) > len(known):
            return name[: -len(known)]
    return path.stem or name


def output_path_for(input_path: Path | str, suffix: str, out: Path | str | None = None) -> Path:
    """Where the output for `input_path` goes: `<dir>/<stem><suffix>.nii.gz`, or as `out` says.

    `out` may be a .nii/.nii.gz path (used as is) or a directory: an existing one, one written with
    a trailing "/", or a name without any extension. Outputs are always NIfTI.
    """
    name = output_stem(input_path) + suffix + OUTPUT_SUFFIX
    if out is None:
        return Path(input_path).parent / name
    out_text = os.fspath(out)
    out_path = Path(out_text).expanduser()
    if out_text.endswith(("/", os.sep)) or out_path.is_dir():
        return out_path / name
    if is_nifti_path(out_text):
        return out_path
    if out_path.suffix == "":
        return out_path / name
    raise SegkitError(f"{out_text}: outputs are NIfTI; give a .nii.gz/.nii path or a directory ending with '/'")


def ensure_not_input(out_path: Path | str, input_path: Path | str) -> None:
    """Refuse an output path that is (or resolves to) the input file."""
    out_path, input_path = Path(out_path), Path(input_path)
    if out_path.exists() and input_path.exists():
        same = os.path.samefile(out_path, input_path)
    else:
        same = out_path.resolve() == input_path.resolve()
    if same:
        raise SegkitError(f"{out_path}: refusing to overwrite the input image; choose another output path")


def save_label_map(data: np.ndarray, like: Image, out_path: Path | str, *, dtype=np.uint8) -> Path:
    """Write integer labels as NIfTI with `like`'s original shape, affine and sform/qform codes."""
    out_path = Path(out_path)
    if not is_nifti_path(out_path):
        raise SegkitError(f"{out_path}: label maps are written as NIfTI; use a .nii.gz or .nii name")
    ensure_not_input(out_path, like.path)
    labels = _labels_as(_in_file_shape(np.asarray(data), like), np.dtype(dtype))
    image = _nifti_like(labels, like)
    with atomic_output(out_path) as tmp:
        write_nifti_image(image, tmp, out_path.name)
    return out_path


def save_nifti(data: np.ndarray, affine: np.ndarray, out_path: Path | str) -> Path:
    """Write any array (images, phantoms, side outputs) as NIfTI with `affine` in scanner
    coordinates, atomically. Label maps that must keep an input's header use save_label_map."""
    out_path = Path(out_path)
    with atomic_output(out_path) as tmp:
        write_nifti_image(_scanner_nifti(np.asarray(data), affine), tmp, out_path.name)
    return out_path


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write a UTF-8 text file (e.g. a JSON sidecar) atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path | str, data, *, indent: int = 2, **dumps_options) -> None:
    """Write `data` as indented JSON with a final newline, atomically (json.dumps options pass through)."""
    atomic_write_text(path, json.dumps(data, indent=indent, **dumps_options) + "\n")


@contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside `path` (same extension); on success rename it into place.

    On any exception the temp file is removed and `path` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise SegkitError(f"{path}: is a directory; give a file name for the output")
    tmp = _reserve_temp_beside(path)
    try:
        yield tmp
    except BaseException:  # also Ctrl-C: never leave the temp file behind
        tmp.unlink(missing_ok=True)
        raise
    try:
        _fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SegkitError(f"{path}: cannot write output ({exc.strerror or exc})") from exc
    _fsync_dir(path.parent)


STALE_TEMP_S = 3600  # a temp file this old belongs to a killed write, not to one in progress


def _sweep_stale_temps(path: Path) -> None:
    """Remove temp files of this output that a killed process left behind."""
    import glob
    import time

    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        try:
            if time.time() - leftover.stat().st_mtime > STALE_TEMP_S:
                leftover.unlink()
        except OSError:
            pass


def write_nifti_image(image, tmp: Path, final_name: str) -> None:
    """nibabel picks the format by file name; the temp has none, so the image is streamed into it
    (gzipped when the final name says so), a chunk at a time: serialising to bytes first held a
    second, uncompressed copy of the volume (200 MB for a 512x512x800 mask)."""
    with open(tmp, "wb") as handle:
        if final_name.lower().endswith(".gz"):
            # mtime=0 and the final name keep the gzip header reproducible and free of the temp name
            with gzip.GzipFile(filename=final_name[:-3], mode="wb", fileobj=handle, compresslevel=6, mtime=0) as gz:
                image.to_stream(gz)
        else:
            image.to_stream(handle)


def _reserve_temp_beside(path: Path) -> Path:
    """Create an empty hidden temp file next to `path`, named so that no output glob takes it for one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegkitError(f"{path.parent}: cannot create output directory ({exc.strerror or exc})") from exc
    _sweep_stale_temps(path)
    # Every temp ends in ".tmp": a write killed by SIGKILL leaves it behind, and no "*.nii.gz",
    # "*.json" or "*.png" glob (a cohort, --pred-dir, a reader of sidecars) may take it for an
    # output. Writers name their format explicitly (PIL's format="PNG"), never by extension.
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            # 0o666 so the final file gets the usual umask permissions (mkstemp would give 0o600)
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise SegkitError(f"{path}: cannot write output ({exc.strerror or exc})") from exc
    raise SegkitError(f"{path}: could not create a temporary file beside it")


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, and not needed for correctness.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _in_file_shape(data: np.ndarray, like: Image) -> np.ndarray:
    """Labels in `like`'s stored shape (undoing the squeeze of trailing singleton axes)."""
    original = like.original_shape
    if data.shape == original:
        return data
    if data.shape == like.shape:
        return data.reshape(original)
    if len(original) > 3 and data.shape == original[:3]:
        return data  # one label volume for a multi-volume input: written as 3D with the same affine
    raise ValueError(f"label array shape {data.shape} does not match image {like.path} (shape {original})")


def _labels_as(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"label maps are written with an integer dtype, not {dtype}")
    if data.dtype == np.bool_ or data.size == 0:
        return data.astype(dtype)  # a new array: bool is not uint8 to nibabel
    if not np.issubdtype(data.dtype, np.integer) and not np.array_equal(data, np.round(data)):
        raise ValueError("label array has non-integer values")
    info = np.iinfo(dtype)
    if data.min() < info.min or data.max() > info.max:
        raise ValueError(f"labels span {data.min()}..{data.max()}, outside {dtype}")
    return data.astype(dtype, copy=False)  # nibabel only reads it: no second full-size volume


def _nifti_like(labels: np.ndarray, like: Image) -> nib.Nifti1Image:
    if like.is_nifti:
        return _nifti_from_input_header(labels, like.header)
    image = _scanner_nifti(labels, like.affine)
    image.header.set_data_dtype(labels.dtype)
    image.header.set_slope_inter(1.0, 0.0)
    return image


def _scanner_nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    import nibabel as nib  # here, not at the top: `segkit eval` imports segkit.io and writes no image

    image = nib.Nifti1Image(data, affine)
    # Same codes ITK uses when it writes NIfTI: both forms describe scanner coordinates.
    image.set_sform(affine, code="scanner")
    image.set_qform(affine, code="scanner")
    image.header.set_xyzt_units("mm")
    return image


def _nifti_from_input_header(labels: np.ndarray, input_header) -> nib.Nifti1Image:
    """Copy the input header so sform, qform, codes and pixdim stay bit-identical; reset the rest."""
    import nibabel as nib

    header = input_header.copy()
    header.set_data_dtype(labels.dtype)
    header.set_data_shape(labels.shape)
    header.set_slope_inter(1.0, 0.0)  # labels are stored exactly, never scaled
    header["cal_min"] = 0
    header["cal_max"] = 0
    header.set_intent("none")
    header["descrip"] = b"segkit label map"
    header.extensions.clear()
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    # affine=None: nibabel takes the geometry from the header instead of rewriting sform/qform
    return image_class(labels, affine=None, header=header)


