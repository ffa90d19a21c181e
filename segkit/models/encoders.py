"""Image-encoder backends for SAM-style models: torch eager, or ONNX Runtime from a cached export
(LiteMedSAM's TinyViT encoder; SAM 2.1's image features for the video predictor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit.runtime.onnx_backend import choose_backend


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
    """The image encoder through ONNX Runtime, from a checked export cached by weights sha256."""

    name = "onnx"

    def __init__(self, net, weights_path: Path | str, device: str, cache_dir: Path | str | None = None, *,
                 model_name: str = "litemedsam", input_size: int = 256):
        from segkit.registry.fetch import sha256_cached
        from segkit.runtime.onnx_backend import OnnxExport, cached_export

        self.device = device
        # the hash the store verified (same cache): the export follows the weights
        export = OnnxExport(f"{model_name}_encoder", sha256_cached(weights_path), (1, 3, input_size, input_size))
        folder = Path(cache_dir) if cache_dir is not None else default_onnx_cache_dir(weights_path)
        self.module = cached_export(lambda: _cpu_copy(net.image_encoder), export, folder, device)
        self.onnx_path = self.module.path

    def __call__(self, image: np.ndarray):
        import torch

        return torch.from_numpy(self.module(image)).to(self.device)


SAM2_FEATURE_OUTPUTS = ("backbone_fpn_0", "backbone_fpn_1", "backbone_fpn_2",
                        "vision_pos_enc_0", "vision_pos_enc_1", "vision_pos_enc_2")


class Sam2OnnxEncoder:
    """SAM 2.1's `forward_image` through ONNX Runtime: the Hiera trunk, the FPN neck and the mask
    decoder's two high-resolution projections, for one (1, 3, size, size) frame, returned in
    sam2's own dict (the lowest-resolution level is also the 'vision_features')."""

    name = "onnx"

    def __init__(self, predictor, model_name: str, source_sha256: str, cache_dir: Path, device: str):
        from segkit.runtime.onnx_backend import OnnxExport, cached_export

        self.device = device
        size = predictor.image_size
        export = OnnxExport(f"{model_name}_image_features", source_sha256, (1, 3, size, size))
        self.module = cached_export(lambda: _sam2_features_module(predictor), export, Path(cache_dir), device,
                                    SAM2_FEATURE_OUTPUTS)
        self.onnx_path = self.module.path

    def __call__(self, img_batch) -> dict:
        import torch

        outputs = [torch.from_numpy(a).to(self.device) for a in self.module.run_all(img_batch.cpu().numpy())]
        levels = len(outputs) // 2
        fpn, positions = outputs[:levels], outputs[levels:]
        return {"vision_features": fpn[-1], "vision_pos_enc": positions, "backbone_fpn": fpn}


def onnx_image_features(predictor, model_name: str, source_sha256: str, cache_dir, device: str, backend: str):
    """Give a segkit RecordingVideoPredictor its ONNX image features (torch's stay where the export
    does not match the network and the backend is auto)."""
    from segkit.runtime.onnx_backend import onnx_or_torch

    encoder = onnx_or_torch(lambda: Sam2OnnxEncoder(predictor, model_name, source_sha256, cache_dir, device),
                            lambda: None, backend)
    predictor.segkit_image_features = encoder
    return encoder


def _sam2_features_module(predictor):
    """A CPU copy of the predictor whose forward is sam2's forward_image, flattened to a tuple."""
    import torch

    class ImageFeatures(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, image):
            out = self.model.forward_image(image)  # sam2's own: the copy has no ONNX features
            return (*out["backbone_fpn"], *out["vision_pos_enc"])

    copy = _cpu_copy(predictor)
    copy.segkit_image_features = None
    return ImageFeatures(copy).eval()


def _cpu_copy(module):
    import copy

    return copy.deepcopy(module).cpu().eval()


def make_encoder(net, weights_path, device: str, backend: str, cache_dir=None, *, model_name: str = "litemedsam",
                 input_size: int = 256):
    from segkit.runtime.onnx_backend import onnx_or_torch

    chosen = choose_backend(backend, device)
    if chosen == "onnx":
        return onnx_or_torch(lambda: OnnxEncoder(net, weights_path, device, cache_dir, model_name=model_name,
                                                 input_size=input_size),
                             lambda: TorchEncoder(net, device), backend)
    return TorchEncoder(net, device)
