"""AutoSAM2's 3D UNet through ONNX Runtime (--backend): the whole-volume network, exported once per
weights with every spatial axis dynamic (cases differ in size), checked against the network at two
sizes (runtime/onnx_backend.py), and cached under SEGKIT_HOME/cache/onnx/brats_autosam2.

Only the UNet is exported: it is the per-case cost that grows with the volume (a 160x240x240
BraTS case: about 20 s on 2 CPU cores in torch, benchmarks/README.md), while the mapper and bridge
are small. ONNX Runtime is opt-in here (--backend onnx): it was not faster than torch on the CPU.
"""

from __future__ import annotations

import copy

EXAMPLE_SIDE = 32  # the export's example volume: a multiple of 16 (the UNet pools four times)


def use_backend(model, weights_sha256: str, device: str, backend: str) -> str:
    """Swap `model.unet` for its ONNX Runtime session where the backend is ONNX Runtime; returns the
    backend that runs it ("onnx" or "torch")."""
    from segkit.runtime.onnx_backend import OnnxExport, cached_export, choose_backend, default_cache_dir, onnx_or_torch

    # auto means torch here: on the CPU ONNX Runtime ran this UNet at 0.88-0.92x torch's speed
    # (benchmarks/README.md), unlike the encoders and nnU-Net, so only an explicit --backend onnx uses it
    if backend != "onnx" or choose_backend(backend, device) != "onnx":
        return "torch"
    from segkit.tasks.brats_autosam2.network import N_CONTRASTS

    shape = (1, N_CONTRASTS, EXAMPLE_SIDE, EXAMPLE_SIDE, EXAMPLE_SIDE)
    export = OnnxExport("autosam2_unet", weights_sha256, shape, dynamic_spatial=True)
    cpu_unet = lambda: copy.deepcopy(model.unet).cpu().eval()  # noqa: E731 - export traces on the CPU
    session = onnx_or_torch(
        lambda: cached_export(cpu_unet, export, default_cache_dir("brats_autosam2"), device, ("logits", "mid")),
        lambda: None, backend)
    if session is None:
        return "torch"
    model.unet = onnx_unet(session)
    return "onnx"


def onnx_unet(session):
    """A torch module with the UNet's interface (volume -> logits, mid features) over `session`."""
    import torch

    class OnnxUNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.session = session

        def forward(self, volume):
            logits, mid = self.session.run_all(volume.detach().cpu().numpy())
            return torch.from_numpy(logits).to(volume.device), torch.from_numpy(mid).to(volume.device)

    return OnnxUNet()
