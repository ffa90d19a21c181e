"""segkit's nnU-Net trainer: nnunetv2's own trainer with a schedule set by `segkit train`, optional
"no mirroring" for labels that name a side, and training patches kept inside the image.

Imported only inside the training worker process (it imports torch and nnunetv2).
"""

from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np
import torch
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as trainer_module
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from segkit.engines.nnunet.checkpoint import load_checkpoint

# The architecture and loss are nnUNetTrainer's, unchanged, and so is the augmentation unless
# mirroring is turned off. Checkpoints therefore name "nnUNetTrainer" as their trainer, because
# nnunetv2's predictor looks the trainer class up by name inside the nnunetv2 package
# (recursive_find_trainer_class_by_name) to rebuild the network, and a class defined in segkit
# would not be found there. With this, segkit's
# models load in nnUNetv2_predict_from_modelfolder and in any nnunetv2 installation.
ARCHITECTURE_TRAINER = "nnUNetTrainer"

# Rotation limit when the labels name a side: nnU-Net rotates anisotropic patches by up to 180 degrees
# in-plane ("dummy 2D" augmentation), which, like mirroring, turns the right muscle into a left one.
LATERAL_ROTATION_RAD = 30.0 / 360.0 * 2.0 * np.pi
SCALE_RANGE = (0.85, 1.25)  # nnUNetTrainer's, needed to size the initial patch


class EdgeClampedDataLoader(nnUNetDataLoader):
    """nnU-Net's training loader, with a patch centred on a chosen voxel kept inside the (padded) image.

    nnU-Net centres foreground patches (and, with an ignore label, every patch) on a chosen voxel and
    clamps only the patch's lower corner, though its comment asks for both bounds. Near the far edge
    the patch then hangs past the image. When an image is no larger than the patch, the anatomy is
    always shifted toward the patch's start, and the network learns that the last slices are
    background: with nnSAM2's sparse round-1 labels every trained model left the top slice empty.
    """

    def get_bbox(self, data_shape, force_fg, class_locations, overwrite_class=None, verbose=False):
        lower, upper = super().get_bbox(data_shape, force_fg, class_locations, overwrite_class, verbose)
        lower, upper = list(lower), list(upper)
        for d in range(len(data_shape)):
            pad = max(int(self.need_to_pad[d]), int(self.patch_size[d] - data_shape[d]))
            highest_start = int(data_shape[d]) + pad // 2 + pad % 2 - int(self.patch_size[d])
            shift = max(0, lower[d] - highest_start)
            lower[d] -= shift
            upper[d] -= shift
        return lower, upper


class SegkitTrainer(nnUNetTrainer):
    # set by the worker before run_training(); None keeps nnU-Net's defaults
    schedule: dict = {}
    on_epoch: Callable[[dict], None] | None = None

    def apply_schedule(self) -> None:
        for key in ("num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch"):
            if self.schedule.get(key):
                setattr(self, key, int(self.schedule[key]))
        # a checkpoint every epoch makes --resume lose at most one epoch
        self.save_every = int(self.schedule.get("save_every") or 1)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, mirror_axes = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if self.schedule.get("mirroring", True):
            return rotation, dummy_2d, initial_patch_size, mirror_axes
        # "no mirroring" (nnSAM2's setting for right/left labels): no flips in training, none allowed at
        # inference (the checkpoint records None, so even --tta cannot flip), and rotations small
        # enough that a side stays on its side
        patch_size = self.configuration_manager.patch_size
        rotation = (max(rotation[0], -LATERAL_ROTATION_RAD), min(rotation[1], LATERAL_ROTATION_RAD))
        initial_patch_size = get_patch_size(patch_size, rotation, rotation, rotation, SCALE_RANGE)
        if dummy_2d:
            initial_patch_size[0] = patch_size[0]
        self.inference_allowed_mirroring_axes = None
        self.print_to_log_file(f"segkit: no mirroring, rotation limited to +-{np.degrees(rotation[1]):.0f} degrees")
        return rotation, dummy_2d, initial_patch_size, None

    def get_dataloaders(self):
        # nnUNetTrainer.get_dataloaders builds its loaders from the module's nnUNetDataLoader and starts
        # the augmentation workers before returning, so the loader class is swapped for the call only
        trainer_module.nnUNetDataLoader = EdgeClampedDataLoader
        try:
            return super().get_dataloaders()
        finally:
            trainer_module.nnUNetDataLoader = nnUNetDataLoader

    def on_epoch_end(self) -> None:
        epoch = self.current_epoch  # the parent increments it at the end of on_epoch_end
        event = {
            "event": "epoch",
            "epoch": epoch + 1,
            "epochs": self.num_epochs,
            "train_loss": _finite(self.logger.get_value("train_losses", step=-1)),
            "val_loss": _finite(self.logger.get_value("val_losses", step=-1)),
            "pseudo_dice": _finite(self.logger.get_value("mean_fg_dice", step=-1)),
        }
        super().on_epoch_end()
        if self.on_epoch is not None:
            self.on_epoch(event)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        """--resume: the workspace checkpoint is read as data (weights only), never unpickled as code.
        nnunetv2 (2.8) cannot take the loaded dict (its dict branch leaves `checkpoint` unset), so
        its torch.load is answered with the dict segkit loaded, for this one call."""
        if not isinstance(filename_or_checkpoint, str):
            return super().load_checkpoint(filename_or_checkpoint)
        checkpoint = load_checkpoint(filename_or_checkpoint)  # refused here if it holds code
        original = torch.load
        torch.load = lambda *args, **kwargs: checkpoint
        try:
            super().load_checkpoint(filename_or_checkpoint)
        finally:
            torch.load = original

    def save_checkpoint(self, filename: str) -> None:
        super().save_checkpoint(filename)
        if self.local_rank != 0 or self.disable_checkpointing or not os.path.isfile(filename):
            return
        checkpoint = load_checkpoint(filename)
        checkpoint["trainer_name"] = ARCHITECTURE_TRAINER
        checkpoint["segkit_schedule"] = json.loads(json.dumps(self.schedule))
        tmp = filename + ".tmp"
        torch.save(checkpoint, tmp)
        os.replace(tmp, filename)  # a kill mid-write never leaves a truncated checkpoint


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None
