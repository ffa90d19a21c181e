"""The epoch loop of brats_autosam2 training: steps, validation, checkpoints, --resume, early stopping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from segkit.errors import SegkitError
from segkit.tasks.brats_autosam2.hybrid import AutoSam2, HybridSettings, pad_to_multiple
from segkit.tasks.brats_autosam2.network import NetworkConfig


def atomic_torch_save(obj, path: Path) -> None:
    from segkit.io.writer import atomic_output

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(obj, str(tmp))


class Loop:
    def __init__(self, config, split, device: str, emit):
        self.config = config
        self.split = split
        self.device = device
        self.emit = emit
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
        self.checkpoints = Path(config.output) / "checkpoints"

    def run(self) -> dict:
        state = {"epoch": 0, "best": None, "best_score": -1.0, "best_epoch": 0, "history": [], "best_validation": {}}
        if self.config.resume:
            state = self._restore()
        self.emit({"event": "stage", "stage": "train", "epochs": self.config.epochs, "start_epoch": state["epoch"]})
        for epoch in range(state["epoch"] + 1, self.config.epochs + 1):
            if epoch - state["best_epoch"] > self.config.patience and state["best_epoch"] > 0:
                self.emit({"event": "stage", "stage": f"early stop after epoch {epoch - 1}"})
                break
            train_loss = self._epoch(epoch)
            validation = self._validate()
            record = {"epoch": epoch, "train_loss": train_loss, "val_dice": validation["dice"],
                      "lr": self.optimizer.param_groups[0]["lr"]}
            state["history"].append(record)
            state["epoch"] = epoch
            if validation["score"] > state["best_score"]:
                state.update(best=validation["dice"], best_score=validation["score"], best_epoch=epoch,
                             best_validation=validation)
                atomic_torch_save({"model": self.model.state_dict(), "epoch": epoch}, self.checkpoints / "best.pt")
            atomic_torch_save(self._full_state(state), self.checkpoints / "last.pt")
            self.emit({"event": "epoch", "epochs": self.config.epochs, **record})
        return state

    def _epoch(self, epoch: int) -> float:
        from segkit.tasks.brats_autosam2.steps import augment, crop, loss_fn

        rng = np.random.default_rng([self.config.seed, epoch])
        self.model.train()
        losses = []
        for _ in range(self.steps):
            _, volume, labels = self.split.train[int(rng.integers(len(self.split.train)))]
            volume, labels = augment(*crop(volume, labels, self.config.patch_size, rng), rng)
            tensor = torch.from_numpy(pad_to_multiple(volume))[None].to(self.device)
            output = self.model(tensor, self.train_settings, labels.shape)
            loss = loss_fn(output.probabilities, torch.from_numpy(labels).to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses))

    def _validate(self) -> dict:
        from segkit.tasks.brats_autosam2.steps import validate

        return validate(self.model, self.split.val, self.val_settings, self.device)

    def _full_state(self, state: dict) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "network": self.network_config.to_dict(),
                "state": json.loads(json.dumps(state))}

    def _restore(self) -> dict:
        from segkit.runtime.checkpoint import load_data

        path = self.checkpoints / "last.pt"
        saved = load_data(path)
        if saved["network"] != self.network_config.to_dict():
            raise SegkitError(f"--resume: {path} was trained with {saved['network']}; the options given now differ")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        return saved["state"]
