"""AISCT-SAM assembled: frozen adapted ViT per slice + self-prompt generator + UNETR decoder.

Input (B, 2, D, S, S): channel 0 the normalised CT, channel 1 its registered mirror. Each slice
goes to the backbone as three channels [CT, mirror, CT - mirror]. The ablation the paper reports
(`mirror=False`) takes channel 0 only ([CT, CT, CT] per slice) and has no self-prompt generator.
Output: (B, 2, D, S, S) logits (background, lesion).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from segkit.tasks.ais_ncct.decoder import UnetrDecoder
from segkit.tasks.ais_ncct.prompts import SelfPromptGenerator

BACKBONES = ("litemedsam", "sam_vit_b")

# AisctSam's state-dict keys saved before the decoder's residual blocks (stem, refine.N, ups.N.block)
# became segkit.models.blocks.ResidualBlock: the Sequential `body` (conv, norm, act, conv, norm) and
# `shortcut` are now conv1, norm1, conv2, norm2 and `project`. Applied by
# segkit.models.blocks.upgrade_state_dict wherever weights are loaded (package, --resume).
_BLOCK = r"^(decoder\.(?:stem|refine\.\d+|ups\.\d+\.block))\."
STATE_RENAMES = tuple((_BLOCK + old, r"\1." + new) for old, new in (
    (r"body\.0\.", "conv1."), (r"body\.1\.", "norm1."), (r"body\.3\.", "conv2."), (r"body\.4\.", "norm2."),
    (r"shortcut\.", "project."),
))


@dataclass(frozen=True)
class NetworkConfig:
    backbone: str = "litemedsam"
    slice_size: int = 256  # S: square in-plane patch side (upstream 256)
    depth: int = 20  # D: slices per patch (upstream 20)
    mirror: bool = True  # False: the ablation without mirror channel and self-prompts
    feature_size: int = 16
    prompt_channels: tuple[int, ...] = (32, 64, 128, 256)
    rank: int = 4
    classes: int = 2

    def to_dict(self) -> dict:
        data = asdict(self)
        data["prompt_channels"] = list(self.prompt_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkConfig":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "prompt_channels" in known:
            known["prompt_channels"] = tuple(int(c) for c in known["prompt_channels"])
        config = cls(**known)
        if config.backbone not in BACKBONES:
            raise ValueError(f"backbone {config.backbone!r} is not one of {', '.join(BACKBONES)}")
        return config


class AisctSam(nn.Module):
    def __init__(self, config: NetworkConfig, backbone: nn.Module):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.prompts = SelfPromptGenerator(config.prompt_channels) if config.mirror else None
        taps = list(zip(backbone.channels, backbone.strides))
        prompt_channels = config.prompt_channels if config.mirror else ()
        self.decoder = UnetrDecoder(taps, prompt_channels, in_channels=3 if config.mirror else 1,
                                    feature_size=config.feature_size, classes=config.classes)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        batch, _, depth, height, width = volume.shape
        ct = volume[:, :1]
        if self.config.mirror:
            mirror = volume[:, 1:2]
            raw, differences = self.prompts(ct, mirror)
            slices = torch.cat([ct, mirror, raw], dim=1)
            full = slices
        else:
            differences = []
            slices = ct.expand(-1, 3, -1, -1, -1)
            full = ct
        per_slice = slices.permute(0, 2, 1, 3, 4).reshape(batch * depth, 3, height, width)
        taps = [self._to_volume(t, batch, depth) for t in self.backbone(per_slice, depth)]
        return self.decoder(full, taps, differences)

    @staticmethod
    def _to_volume(tap: torch.Tensor, batch: int, depth: int) -> torch.Tensor:
        _, channels, h, w = tap.shape
        return tap.view(batch, depth, channels, h, w).permute(0, 2, 1, 3, 4)

    def trainable_state(self) -> dict:
        """Only what training changes (adapters, prompt generator, decoder): the frozen backbone
        weights come from the registry's verified checkpoint, not from the model package."""
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}


def build_network(config: NetworkConfig, *, pretrained: bool = True, backbone_weights=None) -> AisctSam:
    from segkit.tasks.ais_ncct.backbone import build_backbone

    backbone = build_backbone(config.backbone, pretrained=pretrained, weights=backbone_weights, rank=config.rank)
    return AisctSam(config, backbone)


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


NNUNET_NETWORK = "segkit.tasks.ais_ncct.network.nnunet_network"  # the plans' architecture.network_class_name


def nnunet_network(input_channels: int, num_classes: int, deep_supervision: bool = False, pretrained: bool = True,
                   **settings) -> AisctSam:
    """AISCT-SAM as nnU-Net's `get_network_from_plans` builds it: (input channels, classes, the plans'
    arch_kwargs). The input is the CT and its registered mirror, always two channels (the ablation
    reads the first only); there is one output, never deep supervision."""
    config = NetworkConfig.from_dict(settings)
    if input_channels != 2 or num_classes != config.classes or deep_supervision:
        raise ValueError(f"AISCT-SAM takes 2 channels and gives {config.classes} classes without deep supervision; "
                         f"nnU-Net asked for {input_channels} -> {num_classes}, deep supervision {deep_supervision}")
    return build_network(config, pretrained=pretrained)
