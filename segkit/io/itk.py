"""SimpleITK reading (NRRD, MetaImage, DICOM series folders, ...) converted to nibabel conventions.

SimpleITK describes geometry in LPS with origin, spacing and a direction matrix, and
`GetArrayFromImage` returns axes in reverse order (k, j, i). Here the array is transposed back to
(i, j, k) and the geometry becomes a RAS affine, so the result matches what nibabel gives for the
same image stored as NIfTI.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from segkit.errors import ImageError, one_line

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_with_simpleitk(path: Path, dtype: np.dtype | None, series: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(array in nibabel's axis order, RAS affine) of a file or a DICOM series folder.

    dtype None keeps SimpleITK's pixel type. segkit.io.image wraps the result in an Image.
    """
    import SimpleITK as sitk  # imported here: it is slow to import and only some inputs need it

    sitk.ProcessObject.SetGlobalWarningDisplay(log.isEnabledFor(logging.DEBUG))  # ITK/GDCM chatter: --debug
    try:
        if not path.is_dir():
            _check_nrrd_text_body(path)
            _check_declared_size(path)
        sitk_image = _read_series(path, series) if path.is_dir() else sitk.ReadImage(str(path))
        data = _array_in_nibabel_order(sitk_image)
    except ImageError:
        raise
    except Exception as exc:  # SimpleITK raises RuntimeError with multi-line ITK messages
        raise ImageError(f"{path}: cannot read image ({one_line(exc)})") from exc
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return data, affine_from_sitk(sitk_image)


def _check_nrrd_text_body(path: Path) -> None:
    """ITK's NRRD reader crashes the process (segfault) on an 'encoding: ascii' body that is not
    text; such a body is refused here before ITK sees it."""
    import re

    if path.suffix.lower() != ".nrrd":
        return
    with open(path, "rb") as handle:
        head, sep, _ = handle.read(1 << 16).partition(b"\n\n")  # the header only, for a start
    encoding = re.search(rb"^encoding:\s*(\S+)", head, re.MULTILINE)
    if not sep or encoding is None or encoding.group(1).lower() not in (b"ascii", b"text", b"txt"):
        return
    body = path.read_bytes()[len(head) + 2:]  # ascii bodies only: text files, small by nature
    if re.search(rb"[^0-9eE+\-.,naifNAIF \t\r\n]", body):
        raise ImageError(f"{path}: NRRD with 'encoding: ascii' holds non-numeric bytes; the file is corrupt")


def _check_declared_size(path: Path) -> None:
    """The header alone (no voxels read): refuse a size that would not fit in memory."""
    import SimpleITK as sitk

    from segkit.io.limits import check_fits_in_memory

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size = reader.GetSize()
    n_bytes = int(np.prod([int(n) for n in size], dtype=object)) * reader.GetNumberOfComponents() * 8
    check_fits_in_memory(path, size, n_bytes)  # 8 bytes: the widest type segkit converts to


def _read_series(folder: Path, chosen: str | None = None):
    """The folder's one DICOM series, or the one --series names; several without a choice are an
    error that lists them (a silent pick could segment the wrong scan)."""
    import SimpleITK as sitk

    series_ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not series_ids:
        raise ImageError(f"{folder}: folder holds no DICOM series; give a NIfTI/NRRD/MHA file or a DICOM folder")
    if chosen is not None and chosen not in series_ids:
        raise ImageError(f"{folder}: no DICOM series {chosen}; it holds {_describe_series(folder, series_ids)}")
    if chosen is None and len(series_ids) > 1:
        raise ImageError(f"{folder} holds {len(series_ids)} DICOM series: {_describe_series(folder, series_ids)}; "
                         "choose one with --series UID")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), chosen or series_ids[0]))
    return reader.Execute()


def _describe_series(folder: Path, series_ids: list[str]) -> str:
    """'UID ("description", N slices)' for each series, from the first file's header."""
    import SimpleITK as sitk

    parts = []
    for uid in series_ids:
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        reader.ReadImageInformation()
        description = reader.GetMetaData("0008|103e").strip() if reader.HasMetaDataKey("0008|103e") else ""
        parts.append(f'{uid} ("{description}", {len(files)} slices)')
    return "; ".join(parts)


def _array_in_nibabel_order(sitk_image) -> np.ndarray:
    """(k, j, i[, c]) from SimpleITK -> (i, j, k[, c]); vector components stay last."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(sitk_image)
    n_spatial = sitk_image.GetDimension()
    order = list(reversed(range(n_spatial))) + list(range(n_spatial, array.ndim))
    return np.ascontiguousarray(array.transpose(order))


def affine_from_sitk(sitk_image) -> np.ndarray:
    """4x4 RAS affine from SimpleITK origin/spacing/direction (LPS). 2D images get a unit third axis."""
    ndim = sitk_image.GetDimension()
    n = min(ndim, 3)
    direction = np.asarray(sitk_image.GetDirection(), dtype=np.float64).reshape(ndim, ndim)[:n, :n]
    spacing = np.asarray(sitk_image.GetSpacing(), dtype=np.float64)[:n]
    origin = np.asarray(sitk_image.GetOrigin(), dtype=np.float64)[:n]
    lps = np.eye(4)
    lps[:n, :n] = direction * spacing  # column i = step along array axis i
    lps[:n, 3] = origin
    return LPS_TO_RAS @ lps

