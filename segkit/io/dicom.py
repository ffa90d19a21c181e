"""DICOM header facts that change how an image is handled (read without loading the pixels)."""

from __future__ import annotations

from pathlib import Path

MODALITY_TAG = "0008|0060"


def dicom_modality(path: Path | str, series: str | None = None) -> str | None:
    """The Modality (0008,0060) of a DICOM file or series folder, upper-case ("CT", "MR", ...).

    None for other formats, and for DICOM without the tag: the caller then has no header fact.
    """
    first_file = _first_dicom_file(Path(path), series)
    if first_file is None:
        return None
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(first_file))
    try:
        reader.ReadImageInformation()
    except RuntimeError:  # not readable as DICOM: the image reader reports it properly
        return None
    if not reader.HasMetaDataKey(MODALITY_TAG):
        return None
    return reader.GetMetaData(MODALITY_TAG).strip().upper() or None


def _first_dicom_file(path: Path, series: str | None) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() in (".dcm", ".dicom", ".ima") else None
    if not path.is_dir():
        return None
    import SimpleITK as sitk

    series_ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))
    chosen = series if series in series_ids else (series_ids[0] if series_ids else None)
    if chosen is None:
        return None
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), chosen)
    return Path(files[0]) if files else None
