from __future__ import annotations

from dataclasses import dataclass

from segkit.tasks.options import TaskOptions, option


@dataclass(frozen=True)
class SegmentOptions(TaskOptions):
    runner = "cohort_task.runner:LevelRunner"

    level: float = option(0.5, "--level", kind=float, help="Intensity above which a voxel is foreground.")
