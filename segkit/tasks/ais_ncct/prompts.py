"""AISCT-SAM's self-prompt generator: one 3D CNN, weights shared, run on the CT and on its
registered mirror; the prompts are their differences.

    stage i: Conv3d 3^3 + InstanceNorm + ReLU, a spatial/channel reconstruction convolution
             (SCConv: SRU then CRU, Li et al., CVPR 2023), max-pool (1, 2, 2)
    channels 32/64/128/256 at 1/2, 1/4, 1/8, 1/16 of the in-plane size
    outputs  the raw difference (CT - mirror) and the four stage-wise feature differences
"""

from __future__ import annotations

import torch
from torch import nn


class SpatialReconstruction(nn.Module):
    """SRU: group-norm scale factors split informative from redundant features, then cross-add them."""

    def __init__(self, channels: int, groups: int = 4, threshold: float = 0.5):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, channels), channels)
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # informative = where(w > t, 1, w) * x and redundant = where(w > t, 0, w) * x, then their halves
        # cross-added, with at most three full-size tensors alive beside x: at stage 1 each is
        # 32 x 20 x 256 x 256 floats (168 MB). The in-place steps modify only tensors no backward
        # formula keeps (a norm's output, a product's output, where's output), so training is unchanged.
        gamma = self.norm.weight / self.norm.weight.abs().sum().clamp_min(1e-6)
        weights = self.norm(x).mul_(gamma.view(1, -1, 1, 1, 1)).sigmoid_()
        keep = weights > self.threshold
        weighted = weights * x  # not in place: sigmoid's backward keeps its output
        del weights
        informative = torch.where(keep, x, weighted)
        redundant = weighted.masked_fill_(keep, 0.0)
        del weighted, keep
        half = x.shape[1] // 2
        informative[:, :half] += redundant[:, half:]
        informative[:, half:] += redundant[:, :half]
        return informative


class ChannelReconstruction(nn.Module):
    """CRU: split channels, rich (group + point-wise conv) and cheap (point-wise) paths, softmax fuse."""

    def __init__(self, channels: int, alpha: float = 0.5, squeeze: int = 2, groups: int = 2):
        super().__init__()
        self.up = int(channels * alpha)
        self.low = channels - self.up
        self.squeeze_up = nn.Conv3d(self.up, max(1, self.up // squeeze), 1, bias=False)
        self.squeeze_low = nn.Conv3d(self.low, max(1, self.low // squeeze), 1, bias=False)
        up_s, low_s = max(1, self.up // squeeze), max(1, self.low // squeeze)
        self.group_conv = nn.Conv3d(up_s, channels, 3, padding=1, groups=groups if up_s % groups == 0 else 1)
        self.point_up = nn.Conv3d(up_s, channels, 1, bias=False)
        self.point_low = nn.Conv3d(low_s, channels - low_s, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, low = torch.split(x, [self.up, self.low], dim=1)
        up, low = self.squeeze_up(up), self.squeeze_low(low)
        rich = self.group_conv(up).add_(self.point_up(up))  # in place on a convolution's output (not kept for backward)
        cheap = torch.cat([self.point_low(low), low], dim=1)
        del up, low
        # softmax over the 2C channel means of [rich, cheap], then the weighted halves summed in place
        # (no 2C-wide copy, no full-size products)
        weights = torch.softmax(torch.cat([rich.mean(dim=(2, 3, 4), keepdim=True),
                                           cheap.mean(dim=(2, 3, 4), keepdim=True)], dim=1), dim=1)
        rich_weight, cheap_weight = weights.chunk(2, dim=1)
        return rich.mul_(rich_weight).add_(cheap.mul_(cheap_weight))


class PromptStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(in_channels, out_channels, 3, padding=1),
                                  nn.InstanceNorm3d(out_channels, affine=True), nn.ReLU(inplace=True))
        self.reconstruct = nn.Sequential(SpatialReconstruction(out_channels), ChannelReconstruction(out_channels))
        self.pool = nn.MaxPool3d((1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.reconstruct(self.conv(x)))


class SelfPromptGenerator(nn.Module):
    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        self.channels = tuple(channels)
        widths = (1, *channels)
        self.stages = nn.ModuleList(PromptStage(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def features(self, volume: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            volume = stage(volume)
            out.append(volume)
        return out

    def forward(self, ct: torch.Tensor, mirror: torch.Tensor):
        """(B, 1, D, H, W) each -> (raw difference, [four stage-wise differences]). The two volumes go
        through the same weights one after the other (every norm is per sample), so the full-size
        activations of only one are alive at a time."""
        ct_features = self.features(ct)
        return ct - mirror, [a - b for a, b in zip(ct_features, self.features(mirror))]
