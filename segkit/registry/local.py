"""Local tasks: any nnU-Net v2 results zip installed with `install-task NAME --custom-url URL`.

They live in SEGKIT_HOME/local_tasks.yaml (the registry's own schema), which `load_registry`
merges after the shipped registry; a local task can never shadow a shipped one. Labels, channel
names and orientation are read from the model's own json files after the download is verified
(orientation: dataset.json's "segkit_orientation" when segkit trained it, else "native"); edit the
entry's `input.orientation` to override it. The sha256 of the first download is written into the
entry, so later installs of the same task verify against it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from segkit.errors import RegistryError, SegkitError
from segkit.registry.schema import Registry, TaskSpec, parse_registry

LOCAL_TASKS_FILE = "local_tasks.yaml"


def local_tasks_path() -> Path:
    from segkit.registry.store import cache_home

    return cache_home() / LOCAL_TASKS_FILE


def _read_local_tasks(path: Path) -> dict:
    import yaml

    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"local task registry {path} is not readable YAML ({exc}); fix or delete it") from None
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, dict):
        raise RegistryError(f"local task registry {path}: needs a 'tasks' mapping; fix or delete it")
    return tasks


def merge_local_tasks(registry: Registry) -> Registry:
    """The shipped registry plus the user's local tasks (shipped names win)."""
    path = local_tasks_path()
    raw = _read_local_tasks(path)
    if not raw:
        return registry
    local = parse_registry({"schema_version": 1, "tasks": raw}, path)
    merged = dict(local.tasks)
    merged.update(registry.tasks)
    return Registry(path=registry.path, tasks=merged)


def _provisional_entry(name: str, url: str, sha256: str | None) -> dict:
    return {
        "description": f"local nnU-Net v2 model from {url}",
        "citation": "user-supplied model (see its source)",
        "framework": "nnunetv2",
        "weights_published": True,
        "input": {"modality": "unknown", "channels": [{"name": "image"}], "orientation": "native", "spacing": "native"},
        "labels": [{"name": "label", "value": 1, "suffix": "_label_seg"}],
        "files": [
            {
                "name": f"{name}.zip",
                "version": "local",
                "sha256": sha256,
                "checksum_published": sha256 is not None,
                "size": None,
                "unpack": True,
                "mirrors": [url],
            }
        ],
    }


def _entry_from_model(name: str, url: str, sha256: str, model) -> dict:
    entry = _provisional_entry(name, url, sha256)
    entry["description"] = f"local nnU-Net v2 model ({model.path.name}) from {url}"
    entry["input"] = {
        "modality": "unknown",
        "channels": [{"name": c, "suffix": f"_{i:04d}"} for i, c in enumerate(model.channels)],
        "orientation": model.orientation or "native",
        "spacing": "native (nnU-Net resamples to its plans)",
    }
    entry["labels"] = [{"name": lab.name, "value": list(lab.values), "suffix": lab.suffix} for lab in model.labels]
    entry["files"][0].update({"sha256": sha256, "checksum_published": True})
    return entry


def install_local_task(name: str, url: str, sha256: str | None = None, *, force: bool = False, progress=None):
    """Download, verify and unpack `url`, check it is an nnU-Net v2 model, and register NAME locally."""
    from segkit.registry.schema import _TASK_NAME, _parse_task
    from segkit.registry.store import install_task, task_dir
    from segkit.tasks.nnunet.model_folder import load_model_folder

    if not _TASK_NAME.match(name):
        raise SegkitError(f"task name '{name}': use lowercase letters, digits and '_' (e.g. my_cord_model)")
    spec = _parse_task(name, _provisional_entry(name, url, sha256.lower() if sha256 else None))
    installed = install_task(spec, custom_url=url, custom_sha256=sha256, force=force, progress=progress)
    try:
        model = load_model_folder(installed.file_path(spec.files[0].name))
    except SegkitError as exc:
        shutil.rmtree(task_dir(name), ignore_errors=True)  # not a model: leave nothing installed
        raise SegkitError(f"{url} is not an nnU-Net v2 results zip: {exc}") from None
    entry = _entry_from_model(name, url, installed.sha256(spec.files[0].name), model)
    _parse_task(name, entry)  # the entry written must load back
    _write_local_entry(name, entry)
    return installed


def _write_local_entry(name: str, entry: dict) -> None:
    import yaml
    from filelock import FileLock

    path = local_tasks_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        tasks = _read_local_tasks(path)
        tasks[name] = entry
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.safe_dump({"schema_version": 1, "tasks": tasks}, handle, sort_keys=False)
        os.replace(tmp, path)


def is_local_task(spec: TaskSpec) -> bool:
    return spec.name in _read_local_tasks(local_tasks_path())
