"""The nnU-Net network through ONNX Runtime, inside nnunetv2's own predictor.

nnUNetPredictor hands each fold's parameters to `network.load_state_dict` before that fold's
sliding window, then calls `network(tile)` on (1, channels, *patch_size) tiles (it pads a smaller
image up to the patch). `OnnxNetwork` answers both: one checked export per fold (keyed by the fold
checkpoint's sha256, segkit.runtime.onnx_backend), chosen by the parameters it is handed. So
nnunetv2's tiling, Gaussian weighting, mirroring and resampling stay nnunetv2's, and only the
network's forward pass changes backend (on a 2-core CPU 2.8x faster than torch for a narrow
network, no faster at full width, where the 3D convolutions are the cost: benchmarks/README.md).
"""

from __future__ import annotations

import copy
from pathlib import Path


def onnx_network(predictor, checkpoints_sha256: list[str], device: str, cache_dir: Path | None = None):
    """An OnnxNetwork for `predictor`'s folds, exported from its torch network on first use."""
    from segkit.runtime.onnx_backend import OnnxExport, cached_export, default_cache_dir

    network = predictor.network
    patch = tuple(int(n) for n in predictor.configuration_manager.patch_size)
    channels = _input_channels(network)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir("nnunet")
    configuration = predictor.configuration_manager.data_identifier  # e.g. nnUNetPlans_3d_fullres
    sessions = []
    for parameters, sha in zip(predictor.list_of_parameters, checkpoints_sha256):
        export = OnnxExport(configuration, sha, (1, channels, *patch))
        sessions.append(cached_export(lambda p=parameters: _fold_network(network, p), export, folder, device))
    return _onnx_network_class()(sessions, predictor.list_of_parameters)


def _fold_network(network, parameters):
    fold = copy.deepcopy(network).cpu().eval()
    fold.load_state_dict(parameters)
    return fold


def _input_channels(network) -> int:
    first_conv = next(m for m in network.modules() if hasattr(m, "in_channels"))
    return int(first_conv.in_channels)


def _onnx_network_class():
    """Defined on first use so that importing this module does not import torch."""
    import torch

    class OnnxNetwork(torch.nn.Module):
        segkit_backend = "onnx"  # predictor.network_backend reads it; nnunetv2's own networks have none

        def __init__(self, sessions, list_of_parameters):
            super().__init__()
            self.sessions = sessions
            self.fold_ids = [id(p) for p in list_of_parameters]
            self.active = sessions[0]

        def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
            """Select the fold whose parameters nnunetv2 hands over (the very objects it was given)."""
            if id(state_dict) not in self.fold_ids:
                raise RuntimeError("nnunetv2 handed over parameters of no exported fold")
            self.active = self.sessions[self.fold_ids.index(id(state_dict))]

        def forward(self, tile):
            return torch.from_numpy(self.active(tile.detach().cpu().numpy())).to(tile.device)

    return OnnxNetwork
