"""AISCT-SAM inside nnU-Net v2, as upstream trains it: nnU-Net's planner, preprocessor, data loading
and augmentation, with the AISCT-SAM network and the METHODS recipe.

The network is named in the plans (`architecture.network_class_name` = `nnunet_network` below, its
settings in `arch_kwargs`), so nnU-Net's own `get_network_from_plans` builds it, in training and in
nnU-Net's predictor. The trainer changes only the recipe:

    AdamW at the plan's learning rate (segkit's --learning-rate, upstream 1e-4), weight decay 3e-5
    (trainable tensors only: the backbone is frozen), nnU-Net's poly schedule; Dice + CE weighted
    0.5 / 0.5, Dice without the background; one output (no deep supervision); gradient clipping at
    12 (nnU-Net's own train_step); mixed precision on CUDA (nnU-Net's autocast)

Imported only inside nnU-Net's training worker process (it imports torch and nnunetv2).
"""

from __future__ import annotations

import torch
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from segkit.engines.nnunet.trainer import SegkitTrainer
from segkit.tasks.ais_ncct.train import LOSS_WEIGHTS, RECIPE_KEY, WEIGHT_DECAY


class AisctSamTrainer(SegkitTrainer):
    # nnU-Net records its constructor's arguments by the subclass's signature: it must name them all
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = float(self.configuration_manager.configuration[RECIPE_KEY]["initial_lr"])
        self.weight_decay = WEIGHT_DECAY
        self.enable_deep_supervision = False  # AISCT-SAM's decoder has one output

    def configure_optimizers(self):
        trainable = [p for p in self.network.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def _build_loss(self):
        ce, dice = LOSS_WEIGHTS
        return DC_and_CE_loss({"batch_dice": self.configuration_manager.batch_dice, "smooth": 1e-5, "do_bg": False,
                               "ddp": self.is_ddp}, {}, weight_ce=ce, weight_dice=dice,
                              ignore_label=self.label_manager.ignore_label, dice_class=MemoryEfficientSoftDiceLoss)

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        pass  # nnU-Net's version switches its own UNet's decoder; AISCT-SAM has nothing to switch
