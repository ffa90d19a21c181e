"""Local tasks: any nnU-Net v2 results zip installed with `install-task NAME --custom-url URL`.

They live in SEGKIT_HOME/local_tasks.yaml (the registry's own schema; see `local_file`), which
`load_registry` merges after the shipped registry; a local task can never shadow a shipped one.
Labels, channel names and orientation are read from the model's own json files after the download
is verified (orientation: dataset.json's "segkit_orientation" when segkit trained it, else
"native"); edit the entry's `input.orientation` to override it. The sha256 of the first download is written into the
entry, so later installs of the same task verify against it.
"""

from __future__ import annotations

from pathlib import Path

from segkit.errors import SegkitError
from segkit.registry.local_file import write_local_entry
from segkit.registry.schema import _TASK_NAME, _parse_task
from segkit.registry.store import install_task


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
    from segkit.engines.nnunet.model_folder import load_model_folder

    if not _TASK_NAME.match(name):
        raise SegkitError(f"task name '{name}': use lowercase letters, digits and '_' (e.g. my_cord_model)")
    spec = _parse_task(name, _provisional_entry(name, url, sha256.lower() if sha256 else None))

    def check_model(staged: Path) -> None:  # before the install is moved into place or pinned
        try:
            load_model_folder(staged)
        except SegkitError as exc:
            raise SegkitError(f"{url} is not an nnU-Net v2 results zip: {exc}") from None

    installed = install_task(spec, custom_url=url, custom_sha256=sha256, force=force, progress=progress,
                             validate=check_model)
    model = load_model_folder(installed.file_path(spec.files[0].name))
    entry = _entry_from_model(name, url, installed.sha256(spec.files[0].name), model)
    _parse_task(name, entry)  # the entry written must load back
    write_local_entry(name, entry)
    return installed

