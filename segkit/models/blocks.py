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
from torch.nn import functional as F

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

    def forward_consuming(self, holder: list) -> torch.Tensor:
        """forward's values (up to float rounding) for inference on large 3D volumes, in far less
        memory: the input comes out of `holder` (a list holding the caller's only reference; an
        argument would stay referenced by the caller's frame until the call returns) and is freed
        once the first conv and the projection have read it; the convolutions run a slab at a time
        (`conv3d_in_slabs`) and the residual sum works in place."""
        x = holder.pop()
        y = conv3d_in_slabs(self.conv1, x)
        shortcut = x if isinstance(self.project, nn.Identity) else conv3d_in_slabs(self.project, x)
        del x
        y = self.act(self.norm1(y))
        y = conv3d_in_slabs(self.conv2, y)  # two statements: the first norm's output is freed before the second's is made
        y = self.norm2(y)
        y += shortcut
        del shortcut
        return self.act(y)


def conv3d_in_slabs(conv: nn.Conv3d, x: torch.Tensor, slices: int = 16) -> torch.Tensor:
    """A stride-1 Conv3d with 'same' padding, run a slab of `slices` output slices (first spatial
    axis) at a time into one output tensor. `x` is a tensor, or an object with its shape, dtype,
    device and `slab(lo, hi)` (x[:, :, lo:hi]) that makes its slabs on demand. The whole-volume
    call makes an input-sized copy of its input (oneDNN's blocked layout: 1.1 GB for 32 channels
    of a 160x240x240 volume) besides its output; here only a slab's. The values equal the whole
    call's up to float rounding (the library may order a sum differently for another shape: about
    1e-6 relative)."""
    same = isinstance(conv.padding, tuple) and all(2 * p + 1 == k for p, k in zip(conv.padding, conv.kernel_size))
    if conv.stride != (1, 1, 1) or conv.dilation != (1, 1, 1) or conv.groups != 1 or conv.padding_mode != "zeros" or not same:
        raise ValueError("conv3d_in_slabs runs stride-1 convolutions with 'same' zero padding only")
    halo = conv.padding[0]
    depth = x.shape[2]
    out = torch.empty((x.shape[0], conv.out_channels, *x.shape[2:]), dtype=x.dtype, device=x.device)
    for start in range(0, depth, slices):
        stop = min(depth, start + slices)
        lo, hi = max(0, start - halo), min(depth, stop + halo)
        piece = x.slab(lo, hi) if hasattr(x, "slab") else x[:, :, lo:hi]
        missing = (halo - (start - lo), halo - (hi - stop))  # zero padding where the slab meets the volume's ends
        if any(missing):
            piece = F.pad(piece, (0, 0, 0, 0, *missing))
        out[:, :, start:stop] = F.conv3d(piece, conv.weight, conv.bias, padding=(0, *conv.padding[1:]))
    return out


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
