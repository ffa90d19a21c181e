"""Options shared by several tasks, declared once so a flag means one thing everywhere.

Each function returns a fresh dataclass field (a field object cannot be shared between classes).
The options every `segment` or `train` takes whatever the task (input, output, device,
post-processing, ...) live in `SegmentCommon` / `TrainCommon`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.runtime.memory import MAX_MEMORY_HELP
from segkit.tasks.options import TaskOptions, option

PROPAGATORS = ("sam2", "litemedsam")
DEFAULT_PROPAGATOR = "sam2"  # nnSAM2's own; `litemedsam` is the offline alternative


def model_option():
    return option(
        None, "--model", kind=Path, reads_file=True, hidden_aliases=("--model-dir",),
        help="A model trained with `segkit train` (its output folder or model package), or a trained "
             "nnU-Net v2 folder for nnU-Net tasks. Without -task, the task is read from the model.",
    )


def backend_option():
    return option("auto", "--backend", choices=("auto", "onnx", "torch"),
                  help="Network backend: auto (ONNX Runtime on the CPU, from an export checked against the "
                       "network; torch on a GPU or where the export does not match) | onnx | torch.")


def modality_option():
    return option("auto", "--modality", choices=("auto", "ct", "mri"),
                  help="What the image is: ct | mri, or auto (a DICOM header says; else the task guesses from the intensities).")


def window_option():
    return option(None, "--window", kind=str,
                  help="Intensity window before the model: lo,hi (e.g. -160,240) or soft-tissue | brain | lung | "
                       "bone | none. Default: soft-tissue for CT (--modality ct or a DICOM CT), none otherwise.")


def learning_rate_option():
    return option(1e-4, "--learning-rate", minimum=0.0,
                  help="AdamW peak learning rate (1e-4, as both upstream recipes), then the task's schedule "
                       "(brats_autosam2: one-cycle; ais_ncct: nnU-Net's poly decay).")


def support_option():
    return option(None, "--support", kind=Path, reads_file=True, help="Support image with annotated slice(s).")


def support_mask_option():
    return option(None, "--support-mask", kind=Path, reads_file=True,
                  help="Support labels on one or a few slices: 1 right / 2 left LPM, 0 elsewhere.")


def propagator_option():
    return option(DEFAULT_PROPAGATOR, "--propagator", choices=PROPAGATORS,
                  help="Few-shot propagator: sam2 (SAM 2.1 video, nnSAM2's own; downloads its weights) | "
                       "litemedsam (offline, the weights segkit ships).")


def data_option():
    return option(None, "--data", kind=Path, reads_file=True,
                  help="Training dataset folder: nnU-Net v2 format (dataset.json, imagesTr/, labelsTr/) for nnU-Net "
                       "tasks; for cc_fodf, cases of peaks or DWI (+ .bval/.bvec) with a label mask.")


def iterations_option():
    return option(None, "--iterations-per-epoch", kind=int, minimum=1,
                  help="Training iterations (batches) per epoch (default: the method's own).")


def unet_width_option():
    return option(None, "--unet-width", kind=float, minimum=0.1,
                  help="UNet channel multiplier (default 1.0, the method's widths: nnU-Net's planned features per "
                       "stage, AutoSAM2's 16-32-64-128-128; --resume keeps the run's own); below 1 trains faster "
                       "on a CPU, usually less accurately.")


def val_iterations_option():
    return option(None, "--val-iterations-per-epoch", kind=int, minimum=1,
                  help="Validation iterations per epoch (nnU-Net's default: 50).")


@dataclass(frozen=True)
class SegmentCommon(TaskOptions):
    """What `segkit segment` takes for every task."""

    inputs: list = option(None, "-i", "--input", kind=Path, multiple=True, reads_file=True,
                          help="Input image (NIfTI, NRRD, MHA, or a DICOM folder); repeat for channels or cases.")
    task: str | None = option(None, "-task", "--task", "-t", kind=str,
                              help="Task name (see `segkit list-tasks`); optional with --model.")
    output: Path | None = option(None, "-o", "--output", kind=Path,
                                 help="Output file (.nii.gz) or folder. Default: beside the input.")
    qc: Path | None = option(None, "--qc", kind=Path, help="Write PNG overlays of the result on three planes here.")
    device: str = option("auto", "--device", help="auto | cpu | cuda[:N] | mps")
    largest: bool = option(False, "--largest", help="Keep only the largest connected object of each label.")
    fill_holes: bool = option(False, "--fill-holes", help="Fill holes inside each label's mask.")
    remove_small: str | None = option(None, "--remove-small", kind=str,
                                      help="Remove objects smaller than this from each label: e.g. 5mm3 or 5vox.")
    series: str | None = option(None, "--series", kind=str,
                                help="A DICOM folder's series to read (its SeriesInstanceUID), when it holds several.")
    max_memory: str | None = option(None, "--max-memory", kind=str,
                                    help=MAX_MEMORY_HELP + " Cohorts: --memory-per-worker.")


@dataclass(frozen=True)
class TrainCommon(TaskOptions):
    """What `segkit train` takes for every task."""

    task: str | None = option(None, "-task", "--task", "-t", kind=str,
                              help="Task to train a model for (see `segkit list-tasks`); without it, --data is "
                                   "trained as a plain nnU-Net v2 dataset.")
    output: Path = option(Path("segkit_model"), "-o", "--output", kind=Path,
                          help="Folder for the workspace, logs and the model package.")
    epochs: int | None = option(None, "--epochs", kind=int, minimum=1, help="Epochs (default: the method's own).")
    device: str = option("auto", "--device", help="auto | cpu | cuda[:N] | mps")
    resume: bool = option(False, "--resume", help="Continue an interrupted run in -o from its last checkpoint.")
    seed: int | None = option(None, "--seed", kind=int,
                              help="Seed Python, NumPy and torch in training (patch sampling, augmentation, initial "
                                   "weights): repeatable runs on one machine.")
    max_memory: str | None = option(None, "--max-memory", kind=str, help=MAX_MEMORY_HELP)
