"""What `brats_autosam2` (AutoSAM2) takes in `segment` and `train` (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.tasks.common_options import (
    backend_option, data_option, iterations_option, learning_rate_option, model_option, unet_width_option,
)
from segkit.tasks.options import TaskOptions, option

SAM_NAMES = ("litemedsam", "sam2.1-tiny", "sam2.1-small")
SLICE_RULES = ("informative", "positional")


@dataclass(frozen=True)
class SegmentOptions(TaskOptions):
    runner = "segkit.tasks.brats_autosam2.task:AutoSam2Runner"

    model: Path | None = model_option()
    sam: str | None = option(None, "--sam", kind=str, choices=SAM_NAMES,
                             help="SAM stage: litemedsam (offline) | sam2.1-tiny | sam2.1-small (default: the model's own).")
    slice_percentage: float = option(0.3, "--slice-percentage", minimum=0.0, maximum=0.6,
                                     help="Share of axial slices SAM refines, 0..0.6 (0: the 3D UNet alone).")
    slice_rule: str = option("informative", "--slice-rule", choices=SLICE_RULES,
                             help="Slices SAM refines: informative (most tumour probability) | positional (the seed's bands).")
    bg_blend: float = option(0.5, "--bg-blend", minimum=0.0, maximum=1.0,
                             help="Background weight of the UNet against SAM on refined slices.")
    tumor_blend: float = option(0.5, "--tumor-blend", minimum=0.0, maximum=1.0,
                                help="Tumour classes' weight of the UNet against SAM on refined slices.")
    positive_points: int = option(10, "--positive-points", kind=int, minimum=1, help="Positive SAM points per slice.")
    negative_points: int = option(3, "--negative-points", kind=int, minimum=0, help="Negative SAM points per slice (ring).")
    backend: str = backend_option()


@dataclass(frozen=True)
class TrainOptions(TaskOptions):
    trainer = "segkit.tasks.brats_autosam2.train:train_task"

    data: Path | None = data_option()
    iterations_per_epoch: int | None = iterations_option()
    sam: str = option("sam2.1-tiny", "--sam", kind=str, choices=SAM_NAMES,
                      help="SAM stage trained through (frozen) and used at inference: litemedsam | sam2.1-tiny | sam2.1-small.")
    train_slice_percentage: float = option(0.4, "--train-slice-percentage", minimum=0.0, maximum=0.6,
                                           help="Share of slices through SAM in training (method: 0.4; 0 trains the UNet alone).")
    unet_width: float = unet_width_option()
    patch_size: int = option(128, "--patch-size", kind=int, minimum=16, help="Cubic training crop, a multiple of 16.")
    learning_rate: float = learning_rate_option()
    patience: int = option(10, "--patience", kind=int, minimum=1, help="Early stopping: epochs without a better validation Dice.")
