"""Label names for quantify rows: a row that says lpm_left is read right; one that says 2 is guessed.

From `--task NAME`: the registry's labels of that task (value -> name), for a label map holding
several of them. Otherwise from the segkit sidecar beside a mask (`<mask>.json`): a per-label
file segkit wrote names its label, and holds it as 1 (or as its value).
"""

from __future__ import annotations

import json
from pathlib import Path


def task_label_names(task: str) -> dict[int, str]:
    from segkit.registry.schema import load_registry

    spec = load_registry().get(task)
    return {int(value): label.name for label in spec.labels for value in label.values[:1]}


def sidecar_label_names(mask: Path) -> dict[int, str]:
    """{1: name, value: name} from a segkit sidecar that names one label; {} when there is none."""
    name = Path(mask).name
    stem = next((name[: -len(ext)] for ext in (".nii.gz", ".nii") if name.endswith(ext)), name)
    sidecar = Path(mask).with_name(stem + ".json")
    try:
        label = json.loads(sidecar.read_text(encoding="utf-8")).get("label")
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(label, dict) or not isinstance(label.get("name"), str):
        return {}
    names = {1: label["name"]}
    if isinstance(label.get("value"), int):
        names[int(label["value"])] = label["name"]
    return names
