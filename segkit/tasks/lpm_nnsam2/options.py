"""What `lpm_nnsam2` (nnSAM2) takes in `segment` and `train` (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.tasks.common_options import (
    backend_option, iterations_option, modality_option, model_option, propagator_option, support_mask_option,
    support_option, unet_width_option, val_iterations_option,
)
from segkit.tasks.options import TaskOptions, option


@dataclass(frozen=True)
class SegmentOptions(TaskOptions):
    runner = "segkit.tasks.lpm_nnsam2.task:LpmRunner"

    support: Path | None = support_option()
    support_mask: Path | None = support_mask_option()
    propagator: str = propagator_option()
    backend: str = backend_option()
    modality: str = modality_option()
    model: Path | None = model_option()


@dataclass(frozen=True)
class TrainOptions(TaskOptions):
    trainer = "segkit.tasks.lpm_nnsam2.rounds:train_task"

    images: Path | None = option(None, "--images", kind=Path, reads_file=True,
                                 help="Folder of unlabelled 3D images to pseudo-label and train on.")
    support: Path | None = support_option()
    support_mask: Path | None = support_mask_option()
    rounds: int = option(3, "--rounds", minimum=1, help="nnU-Net rounds (nnSAM2: 3).")
    propagator: str = propagator_option()
    modality: str = modality_option()
    iterations_per_epoch: int | None = iterations_option()
    val_iterations_per_epoch: int | None = val_iterations_option()
    unet_width: float = unet_width_option()
