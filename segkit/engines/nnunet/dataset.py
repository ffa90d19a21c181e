"""Check an nnU-Net v2 raw dataset before any compute: one clear line per problem, exit 2.

Layout: DATASET/dataset.json, DATASET/imagesTr/CASE_0000<ending>, ..., DATASET/labelsTr/CASE<ending>.
Headers give shapes and spacings cheaply; label values need the label voxels, which are small.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError
from segkit.engines.nnunet.labels import channel_names, declared_values, read_json

SPACING_TOLERANCE = 1e-3  # relative; nnU-Net's own integrity check is about this strict


class DatasetError(SegkitError):
    """The training dataset is malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class DatasetSummary:
    root: Path
    cases: tuple[str, ...]
    channels: tuple[str, ...]
    file_ending: str
    dataset_json: dict


def validate_dataset(root: Path | str, orientation: str | None = None) -> DatasetSummary:
    """Check layout, dataset.json, channels, label values and geometry; `orientation` (nibabel axis
    codes such as "LAS") additionally requires every image to be stored in the task's orientation,
    because nnU-Net trains on the arrays as stored and segment feeds the model that orientation."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    dataset_json_path = root / "dataset.json"
    if not dataset_json_path.is_file():
        raise DatasetError(f"{dataset_json_path}: missing; an nnU-Net v2 dataset needs dataset.json beside imagesTr/ and labelsTr/")
    try:
        dataset_json = read_json(dataset_json_path, "dataset.json")
        channels = channel_names(dataset_json, str(dataset_json_path))
        allowed = declared_values(dataset_json, str(dataset_json_path))
    except SegkitError as exc:
        raise DatasetError(str(exc)) from None
    ending = dataset_json.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise DatasetError(f"{dataset_json_path}: 'file_ending' must be set, e.g. \".nii.gz\"")
    cases = _cases(root, ending)
    _check_count(dataset_json, dataset_json_path, cases)
    for case in cases:
        _check_case(root, case, ending, len(channels), allowed, orientation)
    return DatasetSummary(root, tuple(cases), tuple(channels), ending, dataset_json)


def _cases(root: Path, ending: str) -> list[str]:
    labels_dir = root / "labelsTr"
    if not labels_dir.is_dir() or not (root / "imagesTr").is_dir():
        raise DatasetError(f"{root}: needs imagesTr/ and labelsTr/ folders (nnU-Net v2 layout)")
    cases = sorted(p.name[: -len(ending)] for p in labels_dir.iterdir() if p.name.endswith(ending) and not p.name.startswith("."))
    if not cases:
        raise DatasetError(f"{labels_dir}: no label files ending in {ending}")
    return cases


def _check_count(dataset_json: dict, path: Path, cases: list[str]) -> None:
    declared = dataset_json.get("numTraining")
    if declared is not None and declared != len(cases):
        raise DatasetError(f"{path}: numTraining is {declared} but labelsTr/ holds {len(cases)} cases; fix numTraining")


def _check_case(root: Path, case: str, ending: str, n_channels: int, allowed: set[int], orientation: str | None) -> None:
    label_path = root / "labelsTr" / f"{case}{ending}"
    label_shape, label_spacing, label_data = _read(label_path, with_data=True)
    for channel in range(n_channels):
        image_path = root / "imagesTr" / f"{case}_{channel:04d}{ending}"
        if not image_path.is_file():
            raise DatasetError(
                f"{image_path}: missing; dataset.json declares {n_channels} channel(s), so case '{case}' needs "
                f"files _0000 to _{n_channels - 1:04d}"
            )
        shape, spacing, _ = _read(image_path, with_data=False)
        if orientation and channel == 0:
            _check_orientation(image_path, orientation)
        if shape != label_shape:
            raise DatasetError(f"{image_path}: shape {shape} differs from its label {label_path.name} {label_shape}")
        if not np.allclose(spacing, label_spacing, rtol=SPACING_TOLERANCE, atol=1e-5):
            raise DatasetError(
                f"{image_path}: spacing {_fmt(spacing)} differs from its label {label_path.name} {_fmt(label_spacing)}; "
                f"resample the label onto the image grid"
            )
    found = set(np.unique(label_data).tolist())
    undeclared = sorted(v for v in found - allowed)
    if undeclared:
        raise DatasetError(
            f"{label_path}: label value(s) {undeclared} are not declared in dataset.json 'labels' "
            f"(declared: {sorted(allowed)})"
        )


def _read(path: Path, *, with_data: bool):
    """(shape, spacing, data or None) through nibabel for NIfTI, SimpleITK for other formats."""
    if path.name.lower().endswith((".nii.gz", ".nii")):
        import nibabel as nib

        try:
            img = nib.load(str(path))
            shape = tuple(int(n) for n in img.shape)
            spacing = tuple(float(z) for z in img.header.get_zooms()[: len(shape)])
            data = np.asanyarray(img.dataobj) if with_data else None
        except Exception as exc:  # noqa: BLE001 - nibabel/gzip raise many types for bad files
            raise DatasetError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
        return shape, spacing, data
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DatasetError(f"{path}: cannot read ({str(exc).strip().splitlines()[-1]})") from None
    data = sitk.GetArrayFromImage(img) if with_data else None
    return tuple(reversed(img.GetSize())), tuple(reversed(img.GetSpacing())), data


def _fmt(spacing) -> str:
    return "x".join(f"{s:g}" for s in spacing)


def _check_orientation(path: Path, orientation: str) -> None:
    if not path.name.lower().endswith((".nii.gz", ".nii")):
        return
    import nibabel as nib

    found = "".join(nib.aff2axcodes(nib.load(str(path)).affine))
    if found != orientation.upper():
        raise DatasetError(
            f"{path}: stored in {found} orientation but this task's models see {orientation.upper()} "
            f"(nibabel axis codes); reorient the training images and labels to {orientation.upper()} first"
        )


# ------------------------------------------------------------------------------ case listing

IMAGE_ENDINGS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class RawCase:
    name: str
    images: tuple[Path, ...]  # one per requested channel, in the requested order
    label: Path


def list_cases(root: Path | str, channels: tuple[int, ...] | list[int] = (0,), *, bare_image: bool = False) -> list[RawCase]:
    """The labelled cases of an nnU-Net raw folder: labelsTr/<case><ending> paired with
    imagesTr/<case>_<channel:04d><ending> for each of `channels`, in that order (a task puts its
    contrasts in its own order). Image and label may differ in ending (.nii.gz / .nii); with
    `bare_image` a single channel may also be imagesTr/<case><ending> (cc_fodf's DWI folders).
    Layout only: nothing is read, and dataset.json is not needed (`validate_dataset` checks it).
    An empty labelsTr/ gives an empty list: callers say what they needed."""
    root = Path(root)
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise DatasetError(f"{root} is not an nnU-Net-style dataset: {folder.name}/ is missing")
    cases = []
    for label in sorted(labels_dir.iterdir()):
        name = _case_name(label.name)
        if name is not None:
            found = [_channel_image(images_dir, name, c, bare_image and len(channels) == 1) for c in channels]
            missing = [f"{name}_{c:04d}{IMAGE_ENDINGS[0]}" for c, path in zip(channels, found) if path is None]
            if missing:
                raise DatasetError(f"{images_dir}: case {name} (label {label.name}) lacks {', '.join(missing)}")
            cases.append(RawCase(name, tuple(found), label))
    return cases


def _case_name(file_name: str) -> str | None:
    for ending in IMAGE_ENDINGS:
        if file_name.endswith(ending) and not file_name.startswith("."):
            return file_name[: -len(ending)]
    return None


def _channel_image(images_dir: Path, name: str, channel: int, bare: bool) -> Path | None:
    for stem in (f"{name}_{channel:04d}", name) if bare else (f"{name}_{channel:04d}",):
        for ending in IMAGE_ENDINGS:
            if (images_dir / f"{stem}{ending}").is_file():
                return images_dir / f"{stem}{ending}"
    return None
