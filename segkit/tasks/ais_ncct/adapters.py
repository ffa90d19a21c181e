"""AISCT-SAM's trainable additions to a frozen ViT block, each its own module.

    GatedLoRA        rank-r update of a projection, scaled by a sigmoid gate (Linear dim->1,
                     averaged over the tokens); used on q and v
    LoRAQKV          a frozen qkv Linear plus gated LoRA on its q and v outputs
    GatedMLPAdapter  a parallel bottleneck MLP (dim->64->dim) with the same kind of gate
    DepthAdapter     3D context: tokens -> B x C x D x h x w, LayerNorm, 1x1x1 C->128, ReLU,
                     depthwise 3x3x3, 1x1x1 128->128, ReLU, 1x1x1 128->C, added to the block output
    AdaptedBlock     a frozen block with all three
Each update starts at zero (last projection zero-initialised), so an untrained adapter leaves the
backbone's output unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class TokenGate(nn.Module):
    """sigmoid(Linear(dim -> 1)) averaged over the tokens: one scalar per image."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, ..., C) -> (B, 1, ..., 1)
        gate = torch.sigmoid(self.linear(tokens)).flatten(1).mean(dim=1)
        return gate.view(-1, *([1] * (tokens.dim() - 1)))


class GatedLoRA(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, rank: int = 4):
        super().__init__()
        self.down = nn.Linear(dim_in, rank, bias=False)
        self.up = nn.Linear(rank, dim_out, bias=False)
        nn.init.zeros_(self.up.weight)
        self.gate = TokenGate(dim_in)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.gate(tokens) * self.up(self.down(tokens))


class LoRAQKV(nn.Module):
    """The frozen qkv projection, with gated LoRA added at the output positions of q and of v."""

    def __init__(self, qkv: nn.Linear, q_index: torch.Tensor, v_index: torch.Tensor, rank: int = 4):
        super().__init__()
        self.qkv = qkv
        self.register_buffer("q_index", q_index.long(), persistent=False)
        self.register_buffer("v_index", v_index.long(), persistent=False)
        self.lora_q = GatedLoRA(qkv.in_features, len(q_index), rank)
        self.lora_v = GatedLoRA(qkv.in_features, len(v_index), rank)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.qkv(tokens)
        out = out.index_add(-1, self.q_index, self.lora_q(tokens))
        return out.index_add(-1, self.v_index, self.lora_v(tokens))


class GatedMLPAdapter(nn.Module):
    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        self.gate = TokenGate(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.gate(tokens) * self.mlp(tokens)


class DepthAdapter(nn.Module):
    """Mixes neighbouring slices: (B*D, N, C) tokens of a h x w grid -> the same shape."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(
            nn.Conv3d(dim, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv3d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.Conv3d(hidden, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv3d(hidden, dim, 1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, tokens: torch.Tensor, depth: int, grid: tuple[int, int]) -> torch.Tensor:
        slices, count, channels = tokens.shape
        volume = self.norm(tokens).view(slices // depth, depth, grid[0], grid[1], channels)
        volume = volume.permute(0, 4, 1, 2, 3)  # B, C, D, h, w
        out = self.net(volume).permute(0, 2, 3, 4, 1)
        return out.reshape(slices, count, channels)


# Slices a frozen block runs at a time in inference: a 20-slice window through the whole block at
# once held about 1.9 GiB (the MLP's hidden tokens and the attention windows of every slice)
INFERENCE_SLICES = 4


class AdaptedBlock(nn.Module):
    """A frozen ViT block (its qkv already wrapped in LoRAQKV) + parallel MLP adapter + depth adapter.

    `layout` is "tokens" for blocks taking (B, N, C) (TinyViT) and "grid" for (B, h, w, C) (SAM ViT).
    `grid` (h, w) is set by the backbone before each forward."""

    def __init__(self, block: nn.Module, dim: int, layout: str, mlp_hidden: int = 64, depth_hidden: int = 128):
        super().__init__()
        self.block = block
        self.layout = layout
        self.mlp_adapter = GatedMLPAdapter(dim, mlp_hidden)
        self.depth_adapter = DepthAdapter(dim, depth_hidden)
        self.depth = 1
        self.grid = (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.shape[0] <= INFERENCE_SLICES:
            out = self.block(x) + self.mlp_adapter(x)
        else:  # the block and its MLP adapter see one slice at a time: a few slices at once bound memory
            out = torch.cat([self.block(part) + self.mlp_adapter(part) for part in x.split(INFERENCE_SLICES)])
        tokens = out.flatten(1, 2) if self.layout == "grid" else out
        tokens = tokens + self.depth_adapter(tokens, self.depth, self.grid)
        return tokens.view_as(out)
