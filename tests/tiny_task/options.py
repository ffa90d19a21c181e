from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.tasks.common_options import model_option
from segkit.tasks.options import TaskOptions, option


@dataclass(frozen=True)
class SegmentOptions(TaskOptions):
    runner = "tiny_task.runner:LevelRunner"

    level: float | None = option(None, "--level", kind=float, help="Intensity above which a voxel is foreground.")
    model: Path | None = model_option()


@dataclass(frozen=True)
class TrainOptions(TaskOptions):
    trainer = "tiny_task.runner:train_level"

    pairs: Path | None = option(None, "--pairs", kind=Path, reads_file=True,
                                help="Folder of <case>.nii.gz images with <case>_label.nii.gz masks.")
