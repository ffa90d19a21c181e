"""Checkpoints and --resume for segkit's own trainers (cc_fodf, brats_autosam2, ais_ncct): one layout,
one wording for every task.

    OUT/checkpoints/last.pt   the full state after the last finished epoch (what --resume continues):
                              model, optimizer, scheduler and generator where the trainer has them,
                              the network settings and the loop's plain-data state
    OUT/checkpoints/best.pt   the best epoch's weights, network settings and epoch number

Every file is written to a hidden temp file and renamed, so a kill never leaves a torn checkpoint
that --resume would take for a whole one. Everything is read back through
`segkit.runtime.checkpoint.load_data` (weights only), which is why the state holds plain data only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from segkit.errors import SegkitError

FOLDER = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


def last_checkpoint(output: Path | str) -> Path:
    return Path(output) / FOLDER / LAST


def best_checkpoint(output: Path | str) -> Path:
    return Path(output) / FOLDER / BEST


def atomic_torch_save(obj, path: Path | str) -> None:
    """torch.save through a hidden temp file and a rename: readers see the old file or the whole new one."""
    import torch

    from segkit.io.writer import atomic_output

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(obj, str(tmp))


def check_output_folder(output: Path | str, resume: bool) -> None:
    """Refuse to train over a run without --resume, and --resume without a run: before any data is read."""
    last = last_checkpoint(output)
    if last.exists() and not resume:
        raise SegkitError(f"{output} already holds a training run; pass --resume to continue it or choose another -o")
    if resume and not last.exists():
        raise SegkitError(f"--resume: no checkpoint at {last}")


@dataclass
class Trainables:
    """What a checkpoint saves and restores. `network` is the settings dict the model was built from:
    --resume with other settings would load weights into a different network, so it is compared first."""

    model: Any
    optimizer: Any
    network: dict
    scheduler: Any = None
    generator: Any = None  # a torch.Generator whose state makes the resumed batches continue the sequence
    weights: Callable[[], dict] | None = None  # the tensors to keep (default: all; ais_ncct keeps trainable ones)
    strict: bool = True  # False where frozen weights come from elsewhere (the registry) on every start
    renames: tuple = ()  # the network's state-dict key renames (segkit.models.blocks.upgrade_state_dict)

    def model_state(self) -> dict:
        return self.weights() if self.weights is not None else self.model.state_dict()


def save_last(output: Path | str, parts: Trainables, state: dict) -> None:
    saved = {"model": parts.model_state(), "optimizer": parts.optimizer.state_dict(), "network": parts.network,
             "state": json.loads(json.dumps(state))}  # plain data only, so weights_only loading works
    if parts.scheduler is not None:
        saved["scheduler"] = parts.scheduler.state_dict()
    if parts.generator is not None:
        saved["generator"] = parts.generator.get_state()
    atomic_torch_save(saved, last_checkpoint(output))


def save_best(output: Path | str, parts: Trainables, epoch: int) -> None:
    atomic_torch_save({"model": parts.model_state(), "network": parts.network, "epoch": epoch}, best_checkpoint(output))


def restore(path: Path | str, parts: Trainables) -> dict:
    """Load a last.pt into `parts` (after checking its network settings); the loop's saved state."""
    from segkit.models.blocks import upgrade_state_dict
    from segkit.runtime.checkpoint import load_data

    saved = load_data(path)  # a refused or corrupt checkpoint is one line, exit 2
    if not isinstance(saved, dict) or "state" not in saved:
        raise SegkitError(f"--resume: {path} is not a segkit training checkpoint")
    if saved.get("network") != parts.network:
        raise SegkitError(f"--resume: {path} was trained with {saved.get('network')}; the options given now differ")
    try:
        # a run started before a key rename resumes under today's names (optimizer states go by position)
        parts.model.load_state_dict(upgrade_state_dict(saved["model"], parts.renames), strict=parts.strict)
        parts.optimizer.load_state_dict(saved["optimizer"])
        if parts.scheduler is not None:
            parts.scheduler.load_state_dict(saved["scheduler"])
        if parts.generator is not None:
            parts.generator.set_state(saved["generator"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise SegkitError(f"--resume: {path} does not fit this network ({str(exc).splitlines()[0]})") from None
    return saved["state"]
