"""What `cc_fodf` (SC2S-Net) takes in `segment` and `train` (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.tasks.common_options import backend_option, data_option, iterations_option, model_option
from segkit.tasks.options import TaskOptions, option


@dataclass(frozen=True)
class SegmentOptions(TaskOptions):
    runner = "segkit.tasks.cc_fodf.task:CcFodfRunner"

    bval: Path | None = option(None, "--bval", kind=Path, reads_file=True,
                               help="FSL .bval of a DWI input; peaks are then computed with dipy CSD.")
    bvec: Path | None = option(None, "--bvec", kind=Path, reads_file=True, help="FSL .bvec of a DWI input.")
    mask: Path | None = option(None, "--mask", kind=Path, reads_file=True,
                               help="Brain mask of a DWI input (default: median_otsu).")
    save_peaks: bool = option(False, "--save-peaks", help="Keep the peaks computed from the DWI (<input>_peaks.nii.gz).")
    model: Path | None = model_option()
    backend: str = backend_option()


@dataclass(frozen=True)
class TrainOptions(TaskOptions):
    trainer = "segkit.tasks.cc_fodf.train:train_task"

    data: Path | None = data_option()
    iterations_per_epoch: int | None = iterations_option()
    architecture: str = option("sc2snet", "--architecture", choices=("sc2snet", "unet"),
                               help="sc2snet | unet (the CNN-only baseline).")
    preset: str | None = option(None, "--preset", kind=str, choices=("cpu", "paper"),
                                help="Network sizes: paper (slice 144, width 1, SAM grid 64, batch 32) or cpu (slice 48, "
                                     "width 0.25, grid 14, batch 16). Default: paper on a GPU; without one, say which.")
    slice_size: int | None = option(None, "--slice-size", kind=int, minimum=16,
                                    help="Square slice size, a multiple of 16 (default: the preset's; paper: 144).")
    width: float | None = option(None, "--width", kind=float, minimum=0.01,
                                 help="CNN channel multiplier (default: the preset's; 1.0: 64..1024 as in the paper).")
    sam_grid: int | None = option(None, "--sam-grid", kind=int, minimum=1,
                                  help="SAM token grid side (default: the preset's; paper: 64, cpu: 14).")
    batch_size: int | None = option(None, "--batch-size", kind=int, minimum=1,
                                    help="Slices per batch (default: the preset's; paper: 32).")
