"""The frozen SAM-family image encoder run on every slice, with AISCT-SAM's adapters in every block.

Two families share one interface: `forward(slices (B*D, 3, S, S), depth D)` returns the features
after blocks 3, 6 and 9 and the neck output, each (B*D, C, h, w), with their strides.

    SamViTBackbone      segment-anything ViT-B (12 blocks, patch 16); the 64x64 position embedding
                        is resized to S/16 x S/16; windowed and global blocks as in SAM
    TinyViTBackbone     LiteMedSAM's TinyViT (embedded in segkit's dependencies, offline): a conv
                        stage, then 10 attention blocks (2 at S/2, 6 at S/4, 2 at S/4) and a neck at
                        S/4; its blocks are told the resolution, so any S divisible by 32 runs

Only the adapters train: every original weight is frozen and the encoder stays in eval mode
(TinyViT's batch norms keep their statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segkit.tasks.ais_ncct.adapters import AdaptedBlock, LoRAQKV

TAPS = (2, 5, 8)  # 0-based: the outputs of blocks 3, 6 and 9
# TinyViT's patch embedding and conv stage see one slice at a time (no adapter there mixes slices):
# they run this many slices at a time, since their intermediates are about 175 MB per 256x256 slice
# (3.5 GB for a whole 20-slice window at once)
STEM_SLICES = 4


def _freeze(module: nn.Module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(False)


class FrozenEncoderMixin(nn.Module):
    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: batch norms and dropouts as pretrained
        return self

    def _run_blocks(self, x, depth: int, grids) -> list:
        taps = []
        for index, (block, grid) in enumerate(zip(self.blocks, grids)):
            block.depth, block.grid = depth, grid
            x = block(x)
            if index in TAPS:
                taps.append(x)
        return x, taps


class SamViTBackbone(FrozenEncoderMixin):
    def __init__(self, image_encoder: nn.Module, rank: int = 4):
        super().__init__()
        self.encoder = image_encoder
        _freeze(image_encoder)
        dim = image_encoder.patch_embed.proj.out_channels
        self.channels = (dim, dim, dim, image_encoder.neck[0].out_channels)
        self.strides = (16, 16, 16, 16)
        blocks = []
        for block in image_encoder.blocks:
            index = torch.arange(3 * dim)
            block.attn.qkv = LoRAQKV(block.attn.qkv, index[:dim], index[2 * dim:], rank)
            blocks.append(AdaptedBlock(block, dim, "grid"))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, slices: torch.Tensor, depth: int):
        x = self.encoder.patch_embed(slices)  # (N, h, w, C)
        grid = tuple(x.shape[1:3])
        if self.encoder.pos_embed is not None:
            pos = self.encoder.pos_embed.permute(0, 3, 1, 2)
            x = x + F.interpolate(pos, size=grid, mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
        x, taps = self._run_blocks(x, depth, [grid] * len(self.blocks))
        neck = self.encoder.neck(x.permute(0, 3, 1, 2))
        return [t.permute(0, 3, 1, 2) for t in taps] + [neck]


def _tinyvit_qkv_index(attn) -> tuple[torch.Tensor, torch.Tensor]:
    """TinyViT lays qkv out per head as [q (key_dim), k (key_dim), v (d)]."""
    per_head = 2 * attn.key_dim + attn.d
    heads = torch.arange(attn.num_heads) * per_head
    q = (heads[:, None] + torch.arange(attn.key_dim)).flatten()
    v = (heads[:, None] + 2 * attn.key_dim + torch.arange(attn.d)).flatten()
    return q, v


class TinyViTBackbone(FrozenEncoderMixin):
    def __init__(self, image_encoder: nn.Module, rank: int = 4):
        super().__init__()
        self.encoder = image_encoder
        _freeze(image_encoder)
        blocks, self.block_strides = [], []
        for layer, stride in zip(image_encoder.layers[1:], (2, 4, 4)):
            for block in layer.blocks:
                q, v = _tinyvit_qkv_index(block.attn)
                block.attn.qkv = LoRAQKV(block.attn.qkv, q, v, rank)
                blocks.append(AdaptedBlock(block, block.dim, "tokens"))
                self.block_strides.append(stride)
        self.blocks = nn.ModuleList(blocks)
        dims = [b.block.dim for b in blocks]
        self.channels = (dims[TAPS[0]], dims[TAPS[1]], dims[TAPS[2]], image_encoder.neck[0].out_channels)
        self.strides = (*[self.block_strides[t] for t in TAPS], 4)

    def _set_resolution(self, size: int) -> None:
        layers = self.encoder.layers
        for layer, stride in zip(layers, (1, 2, 4, 4)):
            layer.input_resolution = (size // stride, size // stride)
            for block in getattr(layer, "blocks", []):
                block.input_resolution = (size // stride, size // stride)
            if layer.downsample is not None:
                layer.downsample.input_resolution = (size // stride, size // stride)

    def forward(self, slices: torch.Tensor, depth: int):
        size = slices.shape[-1]
        if slices.shape[-2] != size or size % 32:
            raise ValueError(f"TinyViT backbone needs square slices with a side divisible by 32, got {tuple(slices.shape[-2:])}")
        self._set_resolution(size)
        layers = self.encoder.layers
        x = torch.cat([layers[0](self.encoder.patch_embed(part)) for part in slices.split(STEM_SLICES)])  # tokens at S/2
        grids, taps, index = [], [], 0
        for layer, stride in zip(layers[1:], (2, 4, 4)):
            grid = (size // stride, size // stride)
            for block in layer.blocks:
                block_wrapper = self.blocks[index]
                block_wrapper.depth, block_wrapper.grid = depth, grid
                x = block_wrapper(x)
                if index in TAPS:
                    taps.append(x.transpose(1, 2).reshape(x.shape[0], -1, *grid))
                index += 1
            if layer.downsample is not None:
                x = layer.downsample(x)
        side = size // 4
        neck = self.encoder.neck(x.transpose(1, 2).reshape(x.shape[0], -1, side, side))
        return taps + [neck]


def build_backbone(name: str, *, pretrained: bool = True, weights=None, rank: int = 4) -> nn.Module:
    """A registry SAM family member's image encoder, wrapped: "litemedsam" or "sam_vit_b"."""
    from segkit.models.sam import build_sam, member

    kind = member(name).kind
    net = build_sam(name, "cpu", weights=weights, pretrained=pretrained)
    if kind == "litemedsam":
        return TinyViTBackbone(net.image_encoder, rank)
    if kind == "sam":
        return SamViTBackbone(net.image_encoder, rank)
    raise ValueError(f"{name}: AISCT-SAM needs a ViT image encoder (litemedsam or sam_vit_b), not {kind}")
