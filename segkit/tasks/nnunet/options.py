"""What nnU-Net v2 tasks take in `segment` and `train` (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.tasks.common_options import (
    backend_option, data_option, iterations_option, model_option, unet_width_option, val_iterations_option,
)
from segkit.tasks.options import TaskOptions, option


@dataclass(frozen=True)
class SegmentOptions(TaskOptions):
    runner = "segkit.tasks.nnunet.task:NnunetRunner"

    folds: list = option(None, "--folds", multiple=True, split=True,
                         help="nnU-Net folds to ensemble (repeat or comma-separate; default: every fold found).")
    tta: bool = option(False, "--tta", help="nnU-Net test-time mirroring (slower, often slightly better).")
    model: Path | None = model_option()
    backend: str = backend_option()


@dataclass(frozen=True)
class TrainOptions(TaskOptions):
    trainer = "segkit.engines.nnunet.train:train_task"

    data: Path | None = data_option()
    fold: str = option("0", "--fold", help="Cross-validation fold 0-4, or 'all' to train on every case.")
    iterations_per_epoch: int | None = iterations_option()
    val_iterations_per_epoch: int | None = val_iterations_option()
    unet_width: float = unet_width_option()
    configuration: str = option("3d_fullres", "--configuration", choices=("3d_fullres", "2d", "3d_lowres"),
                                help="nnU-Net configuration: 3d_fullres | 2d | 3d_lowres")
    mirroring: bool = option(True, "--mirroring", negative="--no-mirroring",
                             help="Flip patches in training and allow flips at inference. --no-mirroring for labels "
                                  "that name a side (also limits rotations to 30 degrees).")
