"""Network blocks that more than one task builds from (2D or 3D, chosen by `dim`).

Each block computes exactly what the tasks' own copies computed before they moved here (same
operation order, eps, affine and bias flags), so trained models keep their outputs bit for bit:

    conv_norm_act       conv (or transposed conv) -> norm -> activation, as three layers to splice
                        into an nn.Sequential (the keys of the networks built from them stay put)
    ResidualBlock       conv3 -> norm -> act -> conv3 -> norm, plus the input (a 1x1 projection
                        when the widths differ), then act: brats_autosam2's UNet and ais_ncct's decoder
    SqueezeExcitation   channel gate: spatial mean -> Linear -> ReLU -> Linear -> sigmoid, times the
                        input: cc_fodf's fusion (no bias, reduction 16) and brats_autosam2's bridge
                        (bias, reduction 4)
    upgrade_state_dict  the one step that renames the keys of weights saved before a block moved
                        here; each task keeps its own table next to its network

norm: "batch" (BatchNorm), "instance" (InstanceNorm, affine), "group" (GroupNorm, `group_norm`);
act: "relu" or "leaky_relu" (slope 0.01). All default eps (1e-5).
"""

from __future__ import annotations

import re

import torch
from torch import nn

NORMS = ("batch", "instance", "group")
ACTIVATIONS = ("relu", "leaky_relu")


def group_norm(channels: int, groups: int | None = None) -> nn.GroupNorm:
    """GroupNorm with `groups` (default min(8, channels)), lowered until it divides `channels`."""
    groups = min(8, channels) if groups is None else min(groups, channels)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


def norm_layer(norm: str, dim: int, channels: int) -> nn.Module:
    if norm == "batch":
        return getattr(nn, f"BatchNorm{dim}d")(channels)
    if norm == "instance":
        return getattr(nn, f"InstanceNorm{dim}d")(channels, affine=True)
    if norm == "group":
        return group_norm(channels)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def activation(act: str) -> nn.Module:
    # in place: each activation takes a fresh tensor that nothing else reads (norm backward uses its input)
    if act == "relu":
        return nn.ReLU(inplace=True)
    if act == "leaky_relu":
        return nn.LeakyReLU(0.01, inplace=True)
    raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")


def conv_type(dim: int, transposed: bool = False) -> type[nn.Module]:
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    return getattr(nn, f"ConvTranspose{dim}d" if transposed else f"Conv{dim}d")


def conv_norm_act(dim: int, c_in: int, c_out: int, kernel_size, *, norm: str, act: str, stride=1, padding=0,
                  bias: bool = False, transposed: bool = False) -> list[nn.Module]:
    """[conv, norm, act]: a list, so that a network splices it into its own nn.Sequential and the
    state-dict keys (`N.weight` of the conv, `N+1.*` of the norm) are those it had before."""
    conv = conv_type(dim, transposed)(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=bias)
    return [conv, norm_layer(norm, dim, c_out), activation(act)]


class ResidualBlock(nn.Module):
    """Two conv3 (no bias) with norms, the input added (1x1 projection, no bias, when the widths
    differ) before the last activation. Attribute names are brats_autosam2's (conv1, norm1, conv2,
    norm2, project); ais_ncct's pre-change names are renamed by its table. Registration order is
    the old one in both tasks, so parameters() order (optimizer states) and seeded inits are kept."""

    def __init__(self, dim: int, c_in: int, c_out: int, *, norm: str, act: str):
        super().__init__()
        conv = conv_type(dim)
        self.conv1 = conv(c_in, c_out, 3, padding=1, bias=False)
        self.norm1 = norm_layer(norm, dim, c_out)
        self.conv2 = conv(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = norm_layer(norm, dim, c_out)
        self.project = conv(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.project(x))


class SqueezeExcitation(nn.Module):
    """Channel attention: mean over the spatial axes -> bottleneck MLP -> sigmoid gate per channel."""

    def __init__(self, channels: int, reduction: int = 16, bias: bool = False):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden, bias=bias),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(range(2, x.ndim))
        weights = self.gate(x.mean(dim=spatial))
        return x * weights.view(*weights.shape, *(1 for _ in spatial))


def upgrade_state_dict(state: dict, renames) -> dict:
    """`state` with the keys of an older network version renamed to today's.

    `renames`: (pattern, replacement) regular-expression pairs; the first pattern that matches a key
    rewrites it (re.sub, once), keys no pattern matches pass unchanged, the tensors are the same
    objects. Today's keys match no pattern, so upgrading twice changes nothing. Pure data: it works
    on what segkit.runtime.checkpoint.load_data read (weights only), never on anything unpickled."""
    if not renames:
        return state
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in renames]
    upgraded = {}
    for key, value in state.items():
        for pattern, replacement in compiled:
            new_key, count = pattern.subn(replacement, key, count=1)
            if count:
                key = new_key
                break
        upgraded[key] = value
    return upgraded
