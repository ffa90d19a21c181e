"""AutoSAM2's trainable parts (METHODS.md, AutoSAM2): the 3D UNet, the bridge and the MRI-to-RGB mapper.

    UNet3D     4 contrasts -> 4 class logits, and the 32-channel 'mid' features at 1/4 resolution.
               Stem conv 4->16 (kernel 5) + GroupNorm + ReLU + a residual block; encoder max-pool +
               residual blocks 32/64/128/128; decoder trilinear up-sampling + concat + residual
               block 256->64, 128->32 (mid), 64->16, 32->16; Dropout3d; 1x1 head.
    Bridge     mid features (32) -> 256 channels for SAM's prompt embedding grid: channel attention
               (C -> C/4 -> C, sigmoid), spatial attention (7x7 conv -> 1, sigmoid), two conv3 -> 128
               with GroupNorm(16) and a 1x1 shortcut, then 1x1 -> 256, GroupNorm(32), times a
               learnable scale (initially 1.5).
    MriToRgb   4 contrasts of a slice -> a 3-channel image in [0, 1] for SAM's image encoder: conv
               4->16, two conv 16->16 (GroupNorm, ReLU), a sigmoid attention map, 1x1 -> 3, sigmoid.

Two initialisations are segkit's, so that an untrained SAM stage is plain SAM prompted by the
UNet (how the CPU proof runs it; training the bridge and mapper needs gradients through SAM's
image encoder, about 75 GFLOP a slice, a GPU's job): the bridge's last GroupNorm starts with gain
0 (it adds nothing until trained), and the mapper has a 1x1 skip from the contrasts, initialised
to FLAIR -> red, T1ce -> green, T2 -> blue, beside its learned branch whose 1x1 -> 3 starts at 0.

`width` scales every UNet channel count (1.0 is the method's 16-32-64-128-128; CPU tests use 0.5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from segkit.models.blocks import ResidualBlock, SqueezeExcitation, conv3d_in_slabs, conv_norm_act, group_norm

N_CLASSES = 4
N_CONTRASTS = 4
SAM_CHANNELS = 256
RGB_CONTRASTS = (3, 1, 2)  # FLAIR, T1ce, T2: the mapper's initial red, green and blue

# AutoSam2's (hybrid.py) state-dict keys saved before the bridge's channel attention became the shared
# SqueezeExcitation (segkit.models.blocks): its MLP was `fc`, now `gate`. Applied by
# segkit.models.blocks.upgrade_state_dict wherever weights are loaded (package, --resume, best.pt).
STATE_RENAMES = ((r"^bridge\.channel\.fc\.", "bridge.channel.gate."),)


@dataclass(frozen=True)
class NetworkConfig:
    width: float = 1.0
    dropout: float = 0.15

    def channels(self) -> tuple[int, ...]:
        return tuple(max(4, int(round(c * self.width))) for c in (16, 32, 64, 128, 128))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkConfig":
        return cls(width=float(data["width"]), dropout=float(data["dropout"]))


def residual_block(c_in: int, c_out: int) -> ResidualBlock:
    """Two conv3 + GroupNorm (groups = min(8, C)) + ReLU with a 1x1 projection of the input."""
    return ResidualBlock(3, c_in, c_out, norm="group", act="relu")


class UNet3D(nn.Module):
    """(B, 4, D, H, W) -> (class logits (B, 4, D, H, W), mid features (B, c1, D/4, H/4, W/4)).

    D, H and W must be multiples of 16 (four poolings); the runner pads to that.
    """

    def __init__(self, config: NetworkConfig = NetworkConfig()):
        super().__init__()
        c0, c1, c2, c3, c4 = config.channels()
        self.stem = nn.Sequential(*conv_norm_act(3, N_CONTRASTS, c0, 5, padding=2, norm="group", act="relu"),
                                  residual_block(c0, c0))
        self.down = nn.ModuleList([residual_block(a, b) for a, b in ((c0, c1), (c1, c2), (c2, c3), (c3, c4))])
        self.up = nn.ModuleList([residual_block(a, b) for a, b in ((c4 + c3, c2), (c2 + c2, c1), (c1 + c1, c0), (c0 + c0, c0))])
        self.dropout = nn.Dropout3d(config.dropout)
        self.head = nn.Conv3d(c0, N_CLASSES, 1)
        self.mid_channels = c1

    def forward(self, x):
        if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return self._layer_by_layer(x)
        return self._infer(x)

    def _layer_by_layer(self, x):
        """The network as the method defines it, each module called on whole tensors: for training
        (autograd keeps the activations anyway) and for ONNX export."""
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.max_pool3d(skips[-1], 2)))
        y = skips.pop()
        mid = None
        for i, block in enumerate(self.up):
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[2:], mode="trilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
            if i == 1:
                mid = y
        return self.head(self.dropout(y)), mid

    def _infer(self, x):
        """forward's values (up to float rounding: `conv3d_in_slabs`) without autograd, in under half
        the memory on a whole BraTS volume (160x240x240: 4727 -> 2226 MiB above the input; a
        16-channel activation there is 562 MiB): every activation is freed as soon as its last
        reader ran, the up-sampled tensor and its skip once they are joined, and the convolutions
        run a slab of slices at a time (no input-sized copy beside their output)."""
        conv, norm, act, block = self.stem
        skips = [block.forward_consuming([act(norm(conv3d_in_slabs(conv, x)))])]
        for block in self.down:
            skips.append(block.forward_consuming([F.max_pool3d(skips[-1], 2)]))
        y = skips.pop()
        mid = None
        for i, block in enumerate(self.up):
            joined = [UpsampledJoin(y, skips.pop())]
            del y
            y = block.forward_consuming(joined)
            if i == 1:
                mid = y
        return conv3d_in_slabs(self.head, self.dropout(y)), mid


class UpsampledJoin:
    """torch.cat([trilinear up-sampling of `low` to `skip`'s size, skip], dim=1), made a slab of
    slices at a time for `conv3d_in_slabs`, so that neither the up-sampled tensor nor the join is
    ever whole (at full resolution they are 562 MiB and 1.1 GiB on a BraTS volume). A slab
    up-samples the low-resolution slices it needs plus one on each side: at a size ratio of 2 its
    slices sit at the same source positions as in the whole up-sampling, so they are equal to the
    bit (tests/test_brats_network.py)."""

    def __init__(self, low: torch.Tensor, skip: torch.Tensor):
        if skip.shape[2] != 2 * low.shape[2]:
            raise ValueError("UpsampledJoin needs the skip to have twice the low tensor's slices")
        self.low, self.skip = low, skip
        self.shape = (skip.shape[0], low.shape[1] + skip.shape[1], *skip.shape[2:])
        self.dtype, self.device = skip.dtype, skip.device

    def slab(self, lo: int, hi: int) -> torch.Tensor:
        first, last = max(0, lo // 2 - 1), min(self.low.shape[2], (hi + 1) // 2 + 1)
        size = (2 * (last - first), *self.skip.shape[3:])
        up = F.interpolate(self.low[:, :, first:last], size=size, mode="trilinear", align_corners=False)
        return torch.cat([up[:, :, lo - 2 * first:hi - 2 * first], self.skip[:, :, lo:hi]], dim=1)


class SpatialAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x):
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class Bridge(nn.Module):
    """UNet mid features of a slice (B, C, h, w) -> (B, 256, h, w) added to SAM's dense prompt embedding."""

    def __init__(self, c_in: int = 32, hidden: int = 128, c_out: int = SAM_CHANNELS, scale: float = 1.5):
        super().__init__()
        self.channel = SqueezeExcitation(c_in, reduction=4, bias=True)
        self.spatial = SpatialAttention()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, hidden, 3, padding=1), group_norm(hidden, 16), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), group_norm(hidden, 16),
        )
        self.shortcut = nn.Conv2d(c_in, hidden, 1)
        self.out = nn.Sequential(nn.Conv2d(hidden, c_out, 1), group_norm(c_out, 32))
        nn.init.zeros_(self.out[1].weight)  # an untrained bridge adds nothing to SAM's prompt embedding
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x):
        x = self.spatial(self.channel(x))
        y = F.relu(self.body(x) + self.shortcut(x))
        return self.out(y) * self.scale


class MriToRgb(nn.Module):
    """(B, 4, H, W) normalised contrasts -> (B, 3, H, W) in [0, 1]."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(N_CONTRASTS, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), group_norm(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), group_norm(hidden), nn.ReLU(inplace=True),
        )
        self.attention = nn.Conv2d(hidden, 1, 1)
        self.rgb = nn.Conv2d(hidden, 3, 1)
        nn.init.zeros_(self.rgb.weight)
        nn.init.zeros_(self.rgb.bias)
        self.direct = nn.Conv2d(N_CONTRASTS, 3, 1)
        with torch.no_grad():  # FLAIR -> red, T1ce -> green, T2 -> blue until trained
            self.direct.weight.zero_()
            self.direct.bias.zero_()
            for rgb, contrast in enumerate(RGB_CONTRASTS):
                self.direct.weight[rgb, contrast] = 1.0

    def forward(self, x):
        y = self.features(x)
        y = y * torch.sigmoid(self.attention(y))
        return torch.sigmoid(self.rgb(y) + self.direct(x))
