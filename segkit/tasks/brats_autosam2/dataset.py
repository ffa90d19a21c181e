"""Training cases for brats_autosam2: a BraTS release folder or an nnU-Net-style folder.

BraTS: one folder per case holding the four contrasts (-t1n, -t1c, -t2w, -t2f, or the older
_t1, _t1ce, _t2, _flair) and a -seg (or _seg) label map.
nnU-Net: dataset.json, imagesTr/<case>_000C.nii.gz and labelsTr/<case>.nii.gz; the channels are
put in the order T1, T1ce, T2, FLAIR by their dataset.json names (MSD Task01 stores FLAIR first).

Label meaning: read from dataset.json where there is one (nnU-Net v2 `{"name": value}` or MSD
`{"value": "name"}`), by name: necrosis / non-enhancing / NETC -> 1 NCR, oedema / SNFH -> 2 ED,
enhancing -> 3 ET, resection cavity -> background. Without dataset.json: the BraTS 2023 convention
(1 NCR, 2 ED, 3 ET), and label 4 read as ET (BraTS up to 2021).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError

DEFAULT_MAPPING = {0: 0, 1: 1, 2: 2, 3: 3, 4: 3}
_CHANNEL_PATTERNS = (("T1ce", r"t1ce|t1c\b|t1gd|t1-?gd|gad|contrast|t1c"), ("FLAIR", r"flair|t2f"),
                     ("T2", r"t2"), ("T1", r"t1"))


@dataclass(frozen=True)
class CaseFiles:
    name: str
    images: tuple[Path, ...]  # T1, T1ce, T2, FLAIR
    label: Path


def class_of(name: str) -> int:
    """BraTS class (0..3) of a dataset.json label name."""
    text = name.lower()
    if re.search(r"background|resection|cavity|\brc\b", text):
        return 0
    if re.search(r"necro|non-?enhancing|\bnetc\b|\bncr\b", text):
        return 1
    if re.search(r"o?edema|\bsnfh\b|\bed\b", text):
        return 2
    if re.search(r"enhancing|\bet\b", text):
        return 3
    raise SegkitError(f"dataset.json label {name!r}: not a BraTS sub-region (necrosis/NETC, oedema/SNFH, enhancing)")


def label_mapping(dataset_json: dict | None) -> dict[int, int]:
    """Source label value -> BraTS class, from dataset.json's `labels` (or the BraTS 2023 default)."""
    if not dataset_json or "labels" not in dataset_json:
        return dict(DEFAULT_MAPPING)
    mapping: dict[int, int] = {}
    for key, value in dataset_json["labels"].items():
        if isinstance(value, list):
            raise SegkitError(f"dataset.json label {key!r} is region-based ({value}); give the per-class labels")
        if str(key).lstrip("-").isdigit():  # MSD: {"1": "edema"}
            mapping[int(key)] = class_of(str(value))
        else:  # nnU-Net v2: {"edema": 1}
            mapping[int(value)] = class_of(str(key))
    return mapping


def channel_order(dataset_json: dict | None) -> list[int]:
    """Channel indices in the order T1, T1ce, T2, FLAIR (nnU-Net `channel_names` or MSD `modality`)."""
    names = (dataset_json or {}).get("channel_names") or (dataset_json or {}).get("modality")
    if not names:
        return [0, 1, 2, 3]
    found: dict[str, int] = {}
    for index, name in sorted(((int(k), str(v)) for k, v in names.items())):
        for contrast, pattern in _CHANNEL_PATTERNS:
            if contrast not in found and re.search(pattern, name.lower()):
                found[contrast] = index
                break
    if len(found) != 4:
        raise SegkitError(f"dataset.json channels {names}: cannot tell T1, T1ce, T2 and FLAIR apart by name")
    return [found[c] for c in ("T1", "T1ce", "T2", "FLAIR")]


def discover(data: Path) -> tuple[list[CaseFiles], dict[int, int]]:
    data = Path(data)
    if not data.is_dir():
        raise SegkitError(f"--data {data}: not a folder")
    dataset_json = _read_json(data / "dataset.json")
    if (data / "imagesTr").is_dir():
        cases = _nnunet_cases(data, channel_order(dataset_json))
    else:
        cases = _brats_cases(data)
    if len(cases) < 2:
        raise SegkitError(f"--data {data}: found {len(cases)} labelled case(s); training needs at least 2 (one to validate)")
    return cases, label_mapping(dataset_json)


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SegkitError(f"{path}: not valid JSON ({exc})") from None


def _brats_cases(data: Path) -> list[CaseFiles]:
    from segkit.tasks.brats_autosam2.inputs import case_folder_inputs, is_case_folder

    cases = []
    for folder in sorted(p for p in data.iterdir() if is_case_folder(p)):
        labels = sorted(p for p in folder.iterdir() if re.search(r"[-_]seg\.nii(\.gz)?$", p.name))
        if len(labels) != 1:
            raise SegkitError(f"{folder}: expected one -seg label map beside the four contrasts, found {len(labels)}")
        cases.append(CaseFiles(folder.name, case_folder_inputs(folder), labels[0]))
    return cases


def _nnunet_cases(data: Path, order: list[int]) -> list[CaseFiles]:
    from segkit.engines.nnunet.dataset import list_cases

    return [CaseFiles(case.name, case.images, case.label) for case in list_cases(data, order)]


def load_case(case: CaseFiles, mapping: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(normalised (4, X, Y, Z) float32 in RAS, labels (X, Y, Z) uint8 0..3 in RAS), checked."""
    from segkit.io.image import load_image, load_label_map
    from segkit.io.orientation import reorientation_to
    from segkit.tasks.base import check_same_grid
    from segkit.tasks.brats_autosam2.inputs import normalise_case

    images = [load_image(p, allowed_ndim=(3,)) for p in case.images]
    label = load_label_map(case.label, allowed_ndim=(3,))
    check_same_grid([*images, label])
    unknown = sorted(set(np.unique(label.data).astype(int)) - set(mapping))
    if unknown:
        raise SegkitError(f"{case.label}: label value(s) {unknown} have no meaning in dataset.json (or the BraTS convention)")
    lookup = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for source, target in mapping.items():
        lookup[source] = target
    reorient = reorientation_to(images[0].affine, images[0].shape, "RAS")
    arrays = [reorient.to_canonical(img.data) for img in images]
    return normalise_case(arrays), reorient.to_canonical(lookup[np.asarray(label.data, dtype=np.int64)])
