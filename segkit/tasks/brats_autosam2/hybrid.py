"""AutoSAM2 assembled: the 3D UNet on the volume, the frozen SAM on chosen slices, blended per class.

    volume (1, 4, D, H, W), axial slices along D
      -> UNet3D: class probabilities U (softmax) and mid features
      -> slices chosen (slices.py) from the tumour probability 1 - U_0
      -> per chosen slice: prompts from that probability (prompts.py), the MRI-to-RGB mapper on the
         slice's four contrasts, the bridge on its mid features, SAM's foreground logits
      -> class-wise blend with interpolation for unprocessed slices (blend.py)

Only the UNet, the bridge and the mapper hold trainable weights; SAM is held outside the module's
state dict, so a model package stores just those three.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from segkit.tasks.brats_autosam2.blend import blend_volume
from segkit.tasks.brats_autosam2.network import Bridge, MriToRgb, NetworkConfig, UNet3D
from segkit.tasks.brats_autosam2.prompts import PromptSettings, make_prompts
from segkit.tasks.brats_autosam2.slices import select_slices


@dataclass(frozen=True)
class HybridSettings:
    slice_percentage: float = 0.3
    slice_rule: str = "informative"
    bg_blend: float = 0.5
    tumor_blend: float = 0.5
    interpolate: bool = True
    prompts: PromptSettings = field(default_factory=PromptSettings)


@dataclass
class HybridOutput:
    probabilities: torch.Tensor  # (4, D, H, W) after blending
    unet: torch.Tensor  # (4, D, H, W) the UNet's own
    slices: list[int]  # chosen slices
    refined: list[int]  # chosen slices that had prompts (SAM ran there)


class AutoSam2(nn.Module):
    def __init__(self, config: NetworkConfig = NetworkConfig()):
        super().__init__()
        self.config = config
        self.unet = UNet3D(config)
        self.bridge = Bridge(c_in=self.unet.mid_channels)
        self.mapper = MriToRgb()
        self._sam: list = []  # a list, so SAM's weights stay out of this module's state dict

    @property
    def sam(self):
        return self._sam[0] if self._sam else None

    def attach_sam(self, stage) -> "AutoSam2":
        self._sam[:] = [stage]
        return self

    def forward(self, volume: torch.Tensor, settings: HybridSettings, shape=None) -> HybridOutput:
        """volume (1, 4, D', H', W') padded to multiples of 16; `shape` the unpadded (D, H, W)."""
        logits, mid = self.unet(volume)
        depth, height, width = shape or volume.shape[2:]
        unet = torch.softmax(logits, dim=1)[0, :, :depth, :height, :width]
        if self.sam is None or settings.slice_percentage <= 0:
            return HybridOutput(unet, unet, [], [])
        tumour = (1 - unet[0]).detach().float().cpu().numpy()
        chosen = select_slices(settings.slice_rule, tumour, settings.slice_percentage)
        foreground = {}
        for z in chosen:
            prompts = make_prompts(tumour[z], settings.prompts)
            if prompts is None:
                continue
            foreground[z] = torch.sigmoid(self._sam_slice(volume, mid, z, prompts, (height, width)))
        blended = blend_volume(unet, foreground, settings.bg_blend, settings.tumor_blend, settings.interpolate)
        return HybridOutput(blended, unet, chosen, sorted(foreground))

    def _sam_slice(self, volume, mid, z: int, prompts, out_shape) -> torch.Tensor:
        height, width = out_shape
        rgb = self.mapper(volume[:, :, z, :height, :width])
        depth_scale = mid.shape[2] / volume.shape[2]
        features = mid[:, :, min(int(z * depth_scale), mid.shape[2] - 1)]
        return self.sam(rgb, self.bridge(features), prompts, out_shape)


def pad_to_multiple(volume: np.ndarray, multiple: int = 16) -> np.ndarray:
    """(C, D, H, W) zero-padded at the far end of each spatial axis to a multiple of `multiple`."""
    pads = [(0, 0)] + [(0, (-n) % multiple) for n in volume.shape[1:]]
    return np.pad(volume, pads)


def ras_to_model(array: np.ndarray) -> np.ndarray:
    """(..., X, Y, Z) in RAS -> (..., Z, Y, X): axial slices first, as the model sees them."""
    return np.swapaxes(array, -1, -3)


def model_to_ras(array: np.ndarray) -> np.ndarray:
    return np.swapaxes(array, -1, -3)


def predict_volume(model: AutoSam2, normalised: np.ndarray, settings: HybridSettings, device: str = "cpu") -> tuple[np.ndarray, HybridOutput]:
    """(label map (X, Y, Z) uint8 0..3, the hybrid output) for a normalised (4, X, Y, Z) RAS case."""
    volume = ras_to_model(normalised)
    shape = volume.shape[1:]
    tensor = torch.from_numpy(pad_to_multiple(volume).astype(np.float32))[None].to(device)
    model.eval()
    with torch.no_grad():
        output = model(tensor, settings, shape)
    labels = output.probabilities.argmax(dim=0).to(torch.uint8).cpu().numpy()
    return model_to_ras(labels), output
