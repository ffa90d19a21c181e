"""nnU-Net v2 dataset.json labels and channels, read without importing torch or nnunetv2.

nnU-Net writes labels as {name: value}. In region-based training a value may be a list: SCIseg's
"sc": [1, 2] means the cord region covers label values 1 and 2 (cord and lesion), "lesion": 2 the
lesion only. The predictor turns regions back into one label map by painting regions in
`regions_class_order`; a region is then recovered as "label map value in its list".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from segkit.errors import SegkitError

_SAFE_NAME = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True)
class NnunetLabel:
    name: str
    values: tuple[int, ...]  # label-map values that belong to this label (one, or a region's list)

    @property
    def suffix(self) -> str:
        """Output file suffix, `_<name>_seg` as SCT names them ("sc" -> "_sc_seg")."""
        return "_" + (_SAFE_NAME.sub("_", self.name).strip("_").lower() or "label") + "_seg"


def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SegkitError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as exc:
        raise SegkitError(f"{path}: {what} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SegkitError(f"{path}: {what} must hold a JSON object")
    return data


def parse_labels(dataset_json: dict, source: str = "dataset.json") -> list[NnunetLabel]:
    """Foreground labels in file order; 'background' (0) and 'ignore' are dropped."""
    raw = dataset_json.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise SegkitError(f"{source}: 'labels' must be a mapping such as {{\"background\": 0, \"cord\": 1}}")
    labels = []
    for name, value in raw.items():
        values = _as_values(value, name, source)
        if name.lower() in ("background", "ignore") or values == (0,):
            continue
        if 0 in values:
            raise SegkitError(f"{source}: label '{name}' lists value 0, which is the background")
        labels.append(NnunetLabel(name=str(name), values=values))
    if not labels:
        raise SegkitError(f"{source}: 'labels' declares no foreground label")
    if not any(_as_values(v, n, source) == (0,) for n, v in raw.items()):
        raise SegkitError(f"{source}: 'labels' must declare \"background\": 0")
    return labels


def _as_values(value, name: str, source: str) -> tuple[int, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise SegkitError(f"{source}: label '{name}' must be a non-negative integer or a list of them, got {value!r}")
    return tuple(int(v) for v in values)


def is_region_based(dataset_json: dict) -> bool:
    return any(isinstance(v, (list, tuple)) and len(v) > 1 for v in dataset_json.get("labels", {}).values())


def declared_values(dataset_json: dict, source: str = "dataset.json") -> set[int]:
    """Every label-map value a training label file may contain (0 included)."""
    values = {0}
    for label in parse_labels(dataset_json, source):
        values.update(label.values)
    ignore = dataset_json.get("labels", {}).get("ignore")
    if isinstance(ignore, int):
        values.add(ignore)
    return values


def channel_names(dataset_json: dict, source: str = "dataset.json") -> list[str]:
    """Channel names in channel order (`_0000`, `_0001`, ...). nnU-Net v1 called them 'modality'."""
    raw = dataset_json.get("channel_names", dataset_json.get("modality"))
    if not isinstance(raw, dict) or not raw:
        raise SegkitError(f"{source}: 'channel_names' must map channel numbers to names, e.g. {{\"0\": \"T2w\"}}")
    try:
        ordered = sorted(raw.items(), key=lambda item: int(item[0]))
    except ValueError:
        raise SegkitError(f"{source}: 'channel_names' keys must be channel numbers (\"0\", \"1\", ...)") from None
    if [int(k) for k, _ in ordered] != list(range(len(ordered))):
        raise SegkitError(f"{source}: 'channel_names' must number channels 0, 1, 2, ... without gaps")
    return [str(name) for _, name in ordered]
