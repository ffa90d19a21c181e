"""What `ais_ncct` (AISCT-SAM) takes in `segment` and `train` (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.tasks.common_options import data_option, iterations_option, learning_rate_option, model_option, val_iterations_option
from segkit.tasks.options import TaskOptions, option

BACKBONES = ("litemedsam", "sam_vit_b")
DEFAULT_BACKBONE = "litemedsam"  # embedded in segkit's dependencies: offline and the cheapest on a CPU


def backbone_option():
    return option(None, "--backbone", kind=str, choices=BACKBONES,
                  help="Frozen image encoder: litemedsam (embedded, offline; the training default) | sam_vit_b "
                       "(downloaded through the registry). In segment, it must match the model's.")


@dataclass(frozen=True)
class SegmentOptions(TaskOptions):
    runner = "segkit.tasks.ais_ncct.task:AisNcctRunner"

    model: Path | None = model_option()
    backbone: str | None = backbone_option()
    save_mirror: bool = option(False, "--save-mirror",
                               help="Keep the registered left-right mirror of the CT (<input>_mirror.nii.gz).")
    save_brain_mask: bool = option(False, "--save-brain-mask",
                                   help="Keep the skull-stripping brain mask (<input>_brain.nii.gz).")


@dataclass(frozen=True)
class TrainOptions(TaskOptions):
    trainer = "segkit.tasks.ais_ncct.train:train_task"

    data: Path | None = data_option()
    backbone: str | None = backbone_option()
    iterations_per_epoch: int | None = iterations_option()
    val_iterations_per_epoch: int | None = val_iterations_option()
    patch_side: int = option(256, "--patch-side", minimum=32, help="Square in-plane patch side, a multiple of 32 (upstream 256).")
    patch_depth: int = option(20, "--patch-depth", minimum=3, help="Slices per patch (upstream 20).")
    patches_per_batch: int = option(2, "--patches-per-batch", minimum=1, help="Patches per batch (upstream 2).")
    learning_rate: float = learning_rate_option()
    spacing: str = option("0.4375,0.4375,3.0", "--spacing", kind=str,
                          help="Model voxel spacing in mm, R-L,A-P,S-I (upstream 0.4375,0.4375,3.0), or 'native'.")
    mirror_channel: bool = option(True, "--mirror-channel", negative="--no-mirror-channel",
                                  help="Feed the registered mirror and self-prompts (AISCT-SAM). --no-mirror-channel "
                                       "trains the paper's ablation: the same network on the CT alone.")
    pretrained_backbone: bool = option(True, "--pretrained-backbone", negative="--random-backbone",
                                       help="Use the backbone's verified weights. --random-backbone: random frozen "
                                            "weights, for plumbing tests only (the package then stores them).")
