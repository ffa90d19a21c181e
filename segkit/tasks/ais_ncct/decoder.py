"""AISCT-SAM's UNETR-style 3D decoder: encoder features at strides 1/2/4/8/16 (in-plane) from the
input and from ViT blocks 3, 6, 9 and the neck, the self-prompt differences added at the matching
scales, then up-sampling with skip connections to 2 classes. Instance norm, feature size 16.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from segkit.models.blocks import ResidualBlock, conv_norm_act

UNIT = {"norm": "instance", "act": "leaky_relu"}  # the decoder's norm (affine) and activation (slope 0.01)


def conv_block(in_channels: int, out_channels: int) -> ResidualBlock:
    """Two 3x3x3 convolutions with instance norm and LeakyReLU, with a residual 1x1x1 shortcut."""
    return ResidualBlock(3, in_channels, out_channels, **UNIT)


class TapProjection(nn.Module):
    """A backbone tap at in-plane stride `source` -> `channels` at stride `target` (UNETR's
    deconvolution chain when up-sampling, strided convolutions when down-sampling)."""

    def __init__(self, in_channels: int, channels: int, source: int, target: int):
        super().__init__()
        steps = int(round(math.log2(source / target)))
        layers: list[nn.Module] = [nn.Conv3d(in_channels, channels, 1, bias=False)]
        # spliced flat into `net` (keys net.0, net.1, net.2, ...), as before the unit was shared
        for _ in range(abs(steps)):
            if steps > 0:
                layers += conv_norm_act(3, channels, channels, (1, 2, 2), stride=(1, 2, 2), transposed=True, **UNIT)
            else:
                layers += conv_norm_act(3, channels, channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), **UNIT)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose3d(in_channels, out_channels, (1, 2, 2), stride=(1, 2, 2), bias=False)
        self.block = conv_block(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class UnetrDecoder(nn.Module):
    """`taps`: (channels, stride) of blocks 3/6/9 and the neck; `prompts`: channels of the four
    prompt differences (empty: no self-prompts); `in_channels`: the volume channels at full size."""

    def __init__(self, taps, prompts, in_channels: int, feature_size: int = 16, classes: int = 2):
        super().__init__()
        widths = [feature_size * 2 ** level for level in range(5)]  # strides 1, 2, 4, 8, 16
        self.stem = conv_block(in_channels, widths[0])
        self.projections = nn.ModuleList(
            TapProjection(c, widths[level + 1], stride, 2 ** (level + 1)) for level, (c, stride) in enumerate(taps))
        self.prompt_projections = nn.ModuleList(nn.Conv3d(c, widths[level + 1], 1) for level, c in enumerate(prompts))
        self.refine = nn.ModuleList(conv_block(w, w) for w in widths[1:])
        self.ups = nn.ModuleList(UpBlock(widths[level + 1], widths[level]) for level in range(4))
        self.head = nn.Conv3d(widths[0], classes, 1)

    def forward(self, volume: torch.Tensor, taps: list[torch.Tensor], prompts: list[torch.Tensor]) -> torch.Tensor:
        levels = [self.stem(volume)]
        for index, tap in enumerate(taps):
            feature = self.projections[index](tap)
            if prompts:
                feature = feature + self.prompt_projections[index](prompts[index])
            levels.append(self.refine[index](feature))
        x = levels[-1]
        for level in range(3, -1, -1):
            x = self.ups[level](x, levels[level])
        return self.head(x)
