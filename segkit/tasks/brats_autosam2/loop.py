"""One brats_autosam2 training epoch (steps, then validation); the epoch loop around it, its
checkpoints, --resume and early stopping are segkit.training's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from segkit.tasks.brats_autosam2.hybrid import AutoSam2, HybridSettings, pad_to_multiple
from segkit.tasks.brats_autosam2.network import STATE_RENAMES, NetworkConfig


class Loop:
    def __init__(self, config, split, device: str, emit):
        from segkit.training.checkpoints import Trainables
        from segkit.training.loop import EpochLoop

        self.config = config
        self.split = split
        self.device = device
        self.network_config = NetworkConfig(width=config.unet_width)
        self.model = AutoSam2(self.network_config).to(device)
        if config.train_slice_percentage > 0:
            from segkit.tasks.brats_autosam2.sam_stage import build_sam_stage

            self.model.attach_sam(build_sam_stage(config.sam, device))
        self.steps = config.iterations_per_epoch or len(split.train)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=config.learning_rate,
                                                             total_steps=config.epochs * self.steps)
        self.train_settings = HybridSettings(slice_percentage=config.train_slice_percentage, slice_rule="positional")
        self.val_settings = HybridSettings(slice_percentage=config.train_slice_percentage)
        parts = Trainables(self.model, self.optimizer, self.network_config.to_dict(), scheduler=self.scheduler,
                           renames=STATE_RENAMES)
        self.loop = EpochLoop(Path(config.output), parts, config.epochs, emit, resume=config.resume,
                              patience=config.patience)

    def run(self) -> dict:
        return self.loop.run(self._epoch)

    def _epoch(self, epoch: int):
        from segkit.tasks.brats_autosam2.steps import validate
        from segkit.training.loop import EpochResult

        train_loss = self._steps(epoch)
        validation = validate(self.model, self.split.val, self.val_settings, self.device)
        record = {"train_loss": train_loss, "val_dice": validation["dice"], "lr": self.optimizer.param_groups[0]["lr"]}
        return EpochResult(record, score=validation["score"], validation=validation)

    def _steps(self, epoch: int) -> float:
        from segkit.tasks.brats_autosam2.steps import augment, crop
        from segkit.training.losses import dice_bce_loss

        rng = np.random.default_rng([self.config.seed, epoch])
        self.model.train()
        losses = []
        for _ in range(self.steps):
            _, volume, labels = self.split.train[int(rng.integers(len(self.split.train)))]
            volume, labels = augment(*crop(volume, labels, self.config.patch_size, rng), rng)
            tensor = torch.from_numpy(pad_to_multiple(volume))[None].to(self.device)
            output = self.model(tensor, self.train_settings, labels.shape)
            loss = dice_bce_loss(output.probabilities, torch.from_numpy(labels).to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses))
