"""Model packages of segkit-trained tasks (no torch at import): what a package says about itself (its
task), the check of its weights, and the one writer every trainer uses.

Packages written by `segkit train` carry a model_card.json naming their task; a trained nnU-Net
folder carries none (its dataset.json describes it), and `segment --model` then runs it as is.
"""

from __future__ import annotations

import json
from pathlib import Path

from segkit.errors import SegkitError

CARD_NAME = "model_card.json"


def find_card(path: Path) -> Path | None:
    """The model card of a package folder (or of its one sub-folder, as unpacked zips hold it)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path if path.name == CARD_NAME else None
    if not path.is_dir():
        return None
    if (path / CARD_NAME).is_file():
        return path / CARD_NAME
    nested = sorted(path.glob(f"*/{CARD_NAME}"))
    return nested[0] if len(nested) == 1 else None


def task_of_model(path: Path) -> str | None:
    """The task a segkit model package was trained for, or None for a plain nnU-Net folder."""
    if not Path(path).expanduser().exists():
        raise SegkitError(f"{path}: model folder not found")
    card = find_card(path)
    if card is None:
        return None
    try:
        task = json.loads(card.read_text(encoding="utf-8")).get("task")
    except (OSError, ValueError) as exc:
        raise SegkitError(f"{card}: cannot be read as JSON ({exc})") from None
    if not task:
        raise SegkitError(f"{card}: names no task; pass -task TASK")
    return str(task)


class ModelPackageError(SegkitError):
    """A --model folder that is not a usable model package of its task."""


def read_format_card(card_path: Path, package_format: str) -> dict:
    """A package's model card, checked to be JSON of the task's package format (one line if not)."""
    try:
        card = json.loads(Path(card_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelPackageError(f"{card_path}: cannot be read as JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != package_format:
        found = card.get("format") if isinstance(card, dict) else None
        raise ModelPackageError(f"{card_path}: format is {found!r}, expected {package_format!r}")
    return card


def network_settings(folder: Path, card: dict, config_type):
    """The card's "network" entry as the task's NetworkConfig; a card without valid settings is one line."""
    try:
        return config_type.from_dict(card["network"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelPackageError(f"{Path(folder) / CARD_NAME}: invalid network settings ({exc})") from None


def verified_weights(folder: Path, card: dict) -> tuple[Path, str]:
    """(path, sha256) of the weights a model card names, checked against the card's sha256."""
    from segkit.registry.store import sha256_of

    weights = Path(folder) / card["weights"]["file"]
    if not weights.is_file():
        raise ModelPackageError(f"{weights}: the weights named by the model card are missing")
    actual = sha256_of(weights)
    if actual != card["weights"]["sha256"]:
        raise ModelPackageError(f"{weights}: sha256 {actual[:12]}... does not match the model card; "
                                "the file is corrupt or replaced")
    return weights, actual


WEIGHTS_NAME = "model.pt"


def write_package(folder: Path, weights: dict, card: dict, *, zip_path: Path | None = None) -> Path:
    """FOLDER/model.pt, then FOLDER/model_card.json with the weights' file name and sha256 filled in
    (ahead of any other `weights` fields the card brings, such as the epoch), each written atomically:
    a folder with a card is complete. With `zip_path`, the same two files zipped, for
    `install-task --custom-url`. Readers (tasks/*/package.py) check `format`, `task` and the sha256."""
    from segkit.io.writer import atomic_write_json
    from segkit.registry.store import sha256_of
    from segkit.training.checkpoints import atomic_torch_save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({k: v.detach().cpu().contiguous() for k, v in weights.items()}, folder / WEIGHTS_NAME)
    fields = {"file": WEIGHTS_NAME, "sha256": sha256_of(folder / WEIGHTS_NAME)}
    card = {**card, "weights": {**fields, **{k: v for k, v in card.get("weights", {}).items() if k not in fields}}}
    atomic_write_json(folder / CARD_NAME, card)
    if zip_path is not None:
        zip_package(folder, Path(zip_path))
    return folder


def zip_package(folder: Path, zip_path: Path) -> None:
    """model.pt and model_card.json at the zip's top level (stored: weights do not compress)."""
    import zipfile

    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.write(folder / WEIGHTS_NAME, WEIGHTS_NAME)
        zf.write(folder / CARD_NAME, CARD_NAME)
    tmp.replace(zip_path)
