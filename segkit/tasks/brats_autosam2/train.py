"""Training AutoSAM2 for `brats_autosam2` (METHODS.md): 0.7 soft Dice (classes 1-3) + 0.3 BCE on the
blended class probabilities; AdamW (weight decay 1e-4), OneCycle, gradient clipping 1.0, early
stopping on the validation mean of WT/TC/ET Dice (patience 10 epochs).

Each step is one case: a random cubic crop (padded where the volume is smaller), random flips and
an intensity scale/shift (each with probability 0.5), the hybrid forward with SAM on
`--train-slice-percentage` of the slices (positional rule, as upstream), loss, step. SAM stays
frozen; gradients reach the mapper and the bridge through it. With a slice percentage of 0 only
the UNet trains (the bridge and mapper keep their initial, neutral weights).

Output folder: checkpoints/last.pt (full state, for --resume) and best.pt; model/ (model.pt +
model_card.json, what `segment --model` takes) and brats_autosam2_model.zip (the same, for
`install-task --custom-url`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from segkit.errors import SegkitError
from segkit.tasks.brats_autosam2.package import LABELS, PACKAGE_FORMAT

ZIP_NAME = "brats_autosam2_model.zip"
EventFn = Callable[[dict], None]


@dataclass
class TrainConfig:
    data: Path
    output: Path
    sam: str = "sam2.1-tiny"
    train_slice_percentage: float = 0.4
    unet_width: float = 1.0
    patch_size: int = 128
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    epochs: int = 100
    iterations_per_epoch: int | None = None  # default: one pass over the training cases
    patience: int = 10
    val_fraction: float = 0.2
    device: str = "auto"
    resume: bool = False
    seed: int = 0


@dataclass
class Split:
    train: list  # (name, volume (4, D, H, W) model order, labels (D, H, W))
    val: list


def load_split(config: TrainConfig) -> Split:
    from segkit.tasks.brats_autosam2.dataset import discover, load_case
    from segkit.tasks.brats_autosam2.hybrid import ras_to_model

    cases, mapping = discover(config.data)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(cases))
    n_val = max(1, int(round(len(cases) * config.val_fraction)))
    loaded = []
    for index in order:
        volume, labels = load_case(cases[index], mapping)
        loaded.append((cases[index].name, ras_to_model(volume).copy(), ras_to_model(labels).copy()))
    return Split(train=loaded[n_val:], val=loaded[:n_val])


def train(config: TrainConfig, on_event: EventFn | None = None) -> dict:
    """Train, keep best/last checkpoints, write the model package; a summary dict."""
    import torch

    from segkit.runtime.device import resolve_device
    from segkit.tasks.brats_autosam2.loop import Loop
    from segkit.training.checkpoints import check_output_folder

    emit = on_event or (lambda event: None)
    if config.patch_size % 16:
        raise SegkitError(f"--patch-size {config.patch_size}: must be a multiple of 16 (the UNet pools four times)")
    output = Path(config.output)
    check_output_folder(output, config.resume)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    emit({"event": "stage", "stage": "loading"})
    split = load_split(config)
    loop = Loop(config, split, resolve_device(config.device), emit)
    state = loop.run()
    model_dir, zip_path = write_package(output, config, loop, state)
    return {"model_dir": model_dir, "zip": zip_path, "best_epoch": state["best_epoch"],
            "best": state["best_validation"].get("dice"),
            "epochs_run": state["epoch"], "seconds": time.perf_counter() - started}


def write_package(output: Path, config: TrainConfig, loop, state: dict) -> tuple[Path, Path]:
    """model/ (best weights + card) and the same two files zipped."""
    import datetime as _dt

    from segkit import __version__
    from segkit.models.blocks import upgrade_state_dict
    from segkit.runtime.checkpoint import load_data
    from segkit.tasks.brats_autosam2.network import STATE_RENAMES
    from segkit.training.checkpoints import best_checkpoint
    from segkit.training.package import write_package as write_model_package

    best = load_data(best_checkpoint(output))
    recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items() if k not in ("output", "resume")}
    card = {
        "format": PACKAGE_FORMAT, "format_version": 1, "task": "brats_autosam2",
        "network": loop.network_config.to_dict(), "sam": config.sam,
        "weights": {"epoch": best["epoch"]},  # file and sha256 are filled in by the package writer
        "labels": {str(k): v for k, v in LABELS.items()},
        "input": {"channels": ["T1", "T1ce", "T2", "FLAIR"], "orientation": "RAS, axial slices along z",
                  "normalisation": "per contrast z-score over voxels > 0, clipped to the 1st/99th percentiles"},
        "training": {"recipe": recipe, "train_cases": [c[0] for c in loop.split.train],
                     "validation_cases": [c[0] for c in loop.split.val], "epochs_run": state["epoch"],
                     "best_epoch": state["best_epoch"], "history": state["history"]},
        "validation": state["best_validation"],
        "segkit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    zip_path = output / ZIP_NAME
    weights = upgrade_state_dict(best["model"], STATE_RENAMES)  # a best.pt from before the rename
    return write_model_package(output / "model", weights, card, zip_path=zip_path), zip_path


def train_task(spec, common, options, say) -> list[tuple]:
    """`segkit train -task brats_autosam2`: a progress bar on stderr; rows for stdout."""
    from segkit.training.progress import EpochProgress

    if options.data is None:
        raise SegkitError("Missing option '--data' (BraTS case folders, or an nnU-Net-style folder with dataset.json)")
    config = TrainConfig(
        data=Path(options.data), output=Path(common.output), sam=options.sam,
        train_slice_percentage=options.train_slice_percentage,
        unet_width=TrainConfig.unet_width if options.unet_width is None else options.unet_width,
        patch_size=options.patch_size, learning_rate=options.learning_rate, patience=options.patience,
        epochs=common.epochs or TrainConfig.epochs, iterations_per_epoch=options.iterations_per_epoch,
        device=common.device, resume=common.resume, seed=TrainConfig.seed if common.seed is None else common.seed,
    )
    with EpochProgress("brats_autosam2", _epoch_stats) as progress:
        result = train(config, on_event=progress.on_event)
    best = result["best"]
    return [("model", result["model_dir"]), ("zip", result["zip"]),
            ("best_epoch", result["best_epoch"], "val_dice_WT_TC_ET", " ".join(f"{best[r]:.4f}" for r in ("WT", "TC", "ET")))]


def _epoch_stats(event: dict) -> str:
    dice = event["val_dice"]
    return f"loss {event['train_loss']:.4f}  val Dice WT {dice['WT']:.3f} TC {dice['TC']:.3f} ET {dice['ET']:.3f}"
