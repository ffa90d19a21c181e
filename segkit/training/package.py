"""What a trained model package says about itself (no torch): which task it is for.

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
