"""Find and describe a trained nnU-Net v2 model folder (no torch import).

A trained folder is `Trainer__Plans__Configuration/` holding dataset.json, plans.json and
fold_X/checkpoint_final.pth (or checkpoint_best.pth). Release zips wrap it in one or more parent
folders, so discovery searches the unpacked tree for the folder that holds all of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.errors import SegkitError
from segkit.engines.nnunet.labels import NnunetLabel, channel_names, parse_labels, read_json

CHECKPOINT_PREFERENCE = ("checkpoint_final.pth", "checkpoint_best.pth")


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    labels: tuple[NnunetLabel, ...]
    channels: tuple[str, ...]
    folds: tuple[str, ...]  # "0", "1", ... or "all"
    checkpoint: str  # file name inside each fold folder
    dataset_json: dict
    plans: dict

    @property
    def checkpoint_paths(self) -> list[Path]:
        """The chosen checkpoint file of each fold, in fold order."""
        return [self.path / f"fold_{fold}" / self.checkpoint for fold in self.folds]

    @property
    def configuration(self) -> str:
        parts = self.path.name.split("__")
        return parts[2] if len(parts) == 3 else "unknown"

    @property
    def orientation(self) -> str | None:
        """An orientation the model folder declares (segkit's own key), else None."""
        value = self.dataset_json.get("segkit_orientation") or self.plans.get("segkit_orientation")
        return str(value) if value else None


def find_model_folder(root: Path) -> Path:
    """The one folder under `root` (or `root` itself) that holds a trained nnU-Net model."""
    root = Path(root)
    if not root.exists():
        raise SegkitError(f"{root}: model folder not found")
    candidates = [root] if _is_model_folder(root) else sorted(
        {p.parent for p in root.rglob("plans.json") if _is_model_folder(p.parent)}
    )
    if not candidates:
        raise SegkitError(
            f"{root}: no trained nnU-Net v2 model here (need dataset.json, plans.json and "
            f"fold_X/{CHECKPOINT_PREFERENCE[0]})"
        )
    if len(candidates) > 1:
        names = ", ".join(str(c.relative_to(root)) for c in candidates)
        raise SegkitError(f"{root}: several nnU-Net models found ({names}); pass one of them with --model-dir")
    return candidates[0]


def _is_model_folder(path: Path) -> bool:
    if not ((path / "dataset.json").is_file() and (path / "plans.json").is_file()):
        return False
    return any((fold / name).is_file() for fold in path.glob("fold_*") for name in CHECKPOINT_PREFERENCE)


def available_folds(path: Path, checkpoint: str) -> list[str]:
    folds = [f.name[len("fold_"):] for f in Path(path).glob("fold_*") if (f / checkpoint).is_file()]
    numeric = sorted((f for f in folds if f.isdigit()), key=int)
    return numeric or [f for f in folds if f == "all"]


def choose_checkpoint(path: Path) -> str:
    """checkpoint_final when any fold has it (a finished training), else checkpoint_best."""
    for name in CHECKPOINT_PREFERENCE:
        if available_folds(path, name):
            return name
    raise SegkitError(f"{path}: no fold_X/checkpoint_final.pth or checkpoint_best.pth")


def load_model_folder(root: Path, folds: list[str] | None = None) -> ModelFolder:
    path = find_model_folder(root)
    dataset_json = read_json(path / "dataset.json", "nnU-Net dataset.json")
    plans = read_json(path / "plans.json", "nnU-Net plans.json")
    checkpoint = choose_checkpoint(path)
    found = available_folds(path, checkpoint)
    chosen = _select_folds(path, checkpoint, found, folds)
    return ModelFolder(
        path=path,
        labels=tuple(parse_labels(dataset_json, str(path / "dataset.json"))),
        channels=tuple(channel_names(dataset_json, str(path / "dataset.json"))),
        folds=tuple(chosen),
        checkpoint=checkpoint,
        dataset_json=dataset_json,
        plans=plans,
    )


def _select_folds(path: Path, checkpoint: str, found: list[str], wanted: list[str] | None) -> list[str]:
    if not wanted:
        return found
    missing = [f for f in wanted if f not in found]
    if missing:
        raise SegkitError(
            f"{path}: fold(s) {', '.join(missing)} have no {checkpoint}; available folds: {', '.join(found) or 'none'}"
        )
    return list(wanted)
