"""The cc_fodf runner: peaks or DWI in, corpus callosum mask out, in the input's own geometry.

    input -> checked (load_cc_input) -> world-frame peaks (read, or dipy CSD from the DWI)
          -> RAS canonical, vectors along the canonical axes (reorient_peaks)
          -> crop/pad to the model's slice-size cube around the brain
          -> 2D predictions along x, y and z, probabilities averaged, threshold 0.5
          -> back into the cube's place, back to the input's orientation and shape.

A model package is a folder with model.pt (a state dict) and model_card.json (network settings,
sha256 of model.pt, training summary); `segkit train -task cc_fodf` writes one. segkit never runs
this task without one: the authors published no weights.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segkit.errors import SegkitError

from segkit.tasks.base import Case, Inferred, Prepared, TaskRunner
from segkit.tasks.cc_fodf.cube import spatial_reference, fit_to_cube, restore_from_cube
from segkit.training.package import CARD_NAME, ModelPackageError, network_settings, read_format_card, verified_weights

if TYPE_CHECKING:
    from segkit.registry.schema import TaskSpec

PACKAGE_FORMAT = "segkit-cc_fodf-model"


# ------------------------------------------------------------------------------ model packages


@dataclass
class LoadedModel:
    net: object  # torch.nn.Module in eval mode
    card: dict
    folder: Path
    sha256: str
    forward: object = None  # what predicts a batch: the net, or its ONNX export (with_backend)
    backend: str = "torch"

    @property
    def slice_size(self) -> int:
        return int(self.card["network"]["slice_size"])


def find_model_folder(spec: "TaskSpec", model: Path | str | None) -> Path:
    """--model DIR if given, else the package registered with install-task; otherwise refuse plainly."""
    if model is not None:
        return _package_root(Path(model), f"--model {model}")
    from segkit.registry.store import installed_task

    from segkit.tasks.base import no_weights_error

    installed = installed_task(spec.name)
    if installed is None:
        raise no_weights_error(spec)
    for entry in installed.manifest["files"]:
        return _package_root(installed.root / entry["local_path"], f"the installed {spec.name} model")
    raise no_weights_error(spec)


def _package_root(path: Path, what: str) -> Path:
    from segkit.training.package import find_card

    card = find_card(path)
    if card is None:
        raise ModelPackageError(f"{what}: {path} holds no {CARD_NAME}; it is not a cc_fodf model package "
                                f"(see `segkit train -task cc_fodf`)")
    return card.parent


def load_model_package(folder: Path | str, device: str = "cpu") -> LoadedModel:
    """Read the card, verify the weights' sha256, rebuild the network and load the weights."""
    from segkit.runtime.checkpoint import load_data
    from segkit.tasks.cc_fodf.network import NetworkConfig, build_network

    folder = Path(folder)
    card = read_format_card(folder / CARD_NAME, PACKAGE_FORMAT)
    weights_path, actual = verified_weights(folder, card)
    config = network_settings(folder, card, NetworkConfig)
    net = build_network(config)
    net.load_state_dict(load_data(weights_path), strict=True)
    net = net.to(device).eval()
    return LoadedModel(net, card, folder, actual, forward=net)


def with_backend(model: LoadedModel, device: str, backend: str) -> LoadedModel:
    """The model predicting through a checked ONNX export of its network (dynamic batch; cached
    under SEGKIT_HOME by the weights' sha256) where the backend is ONNX Runtime."""
    from dataclasses import replace

    from segkit.runtime.onnx_backend import OnnxExport, cached_export, choose_backend, default_cache_dir, onnx_or_torch
    from segkit.tasks.cc_fodf.network import NetworkConfig

    if choose_backend(backend, device) != "onnx":
        return model
    config = NetworkConfig.from_dict(model.card["network"])  # validated when the package was loaded
    shape = (2, config.in_channels, config.slice_size, config.slice_size)
    export = OnnxExport(config.architecture, model.sha256, shape, dynamic_batch=True)
    cpu_net = lambda: copy.deepcopy(model.net).cpu().eval()  # noqa: E731 - export traces on the CPU
    module = onnx_or_torch(lambda: cached_export(cpu_net, export, default_cache_dir("cc_fodf"), device),
                           lambda: None, backend)
    return model if module is None else replace(model, forward=_OnnxForward(module), backend="onnx")


class _OnnxForward:
    """Torch batch in, torch logits out (on the batch's device), through an ONNX Runtime session."""

    def __init__(self, module):
        self.module = module

    def __call__(self, batch):
        import torch

        return torch.from_numpy(self.module(batch.cpu().numpy())).to(batch.device)


def predict_cube(net, cube: np.ndarray, *, device: str = "cpu", batch_size: int = 32, progress=None) -> np.ndarray:
    """Mean foreground probability of a (S, S, S, 9) cube from 2D predictions along x, y and z.

    Empty slices (no peaks at all: outside the brain) are given probability 0 without a forward pass.
    """
    import torch

    from segkit.tasks.cc_fodf.batches import normalise_slices, slice_channels_first

    size = cube.shape[0]
    total = np.zeros(cube.shape[:3], dtype=np.float32)
    occupied = np.abs(cube).max(axis=-1) > 0
    work = [(axis, [i for i in range(size) if np.take(occupied, i, axis=axis).any()]) for axis in range(3)]
    chunks = [(axis, idx[s : s + batch_size]) for axis, idx in work for s in range(0, len(idx), batch_size)]
    for done, (axis, indices) in enumerate(chunks, start=1):
        batch = torch.from_numpy(np.stack([slice_channels_first(cube, axis, i) for i in indices]))
        with torch.no_grad():
            probability = torch.sigmoid(net(normalise_slices(batch).to(device)))[:, 0].float().cpu().numpy()
        for i, slice_probability in zip(indices, probability):
            index = [slice(None)] * 3
            index[axis] = i
            total[tuple(index)] += slice_probability
        if progress is not None:
            progress(done, len(chunks))
    return total / 3.0


# ------------------------------------------------------------------------------ the runner


class CcFodfRunner(TaskRunner):
    """Peaks or DWI in (checked before the model is looked for), corpus callosum mask out."""

    def prepare(self, case: Case) -> Prepared:
        from segkit.tasks.cc_fodf.inputs import load_cc_input

        options = self.options
        cc_input = load_cc_input(case.source, options.bval, options.bvec, options.mask)
        if options.save_peaks and cc_input.kind != "dwi":
            raise SegkitError(f"--save-peaks: {case.source} already is a peaks file; nothing to save")
        # the vectors turn with the axes, so the reorientation is made with the peaks, in `infer`
        return Prepared(case, spatial_reference(cc_input.image), [], None, {"cc_input": cc_input})

    def _folder(self) -> Path:
        return find_model_folder(self.spec, self.options.model)

    def model_key(self) -> tuple:
        from segkit.runtime.device import resolve_device

        card = json.loads((self._folder() / CARD_NAME).read_text(encoding="utf-8"))
        return (card.get("weights", {}).get("sha256"), resolve_device(self.common.device), self.options.backend)

    def load_model(self) -> LoadedModel:
        from segkit.runtime.device import resolve_device

        device = resolve_device(self.common.device)
        return with_backend(load_model_package(self._folder(), device), device, self.options.backend)

    def infer(self, model: LoadedModel, prepared: Prepared, progress) -> Inferred:
        import time

        from segkit.tasks.cc_fodf.inputs import peaks_for_input
        from segkit.tasks.cc_fodf.peak_frames import reorient_peaks

        cc_input = prepared.extra["cc_input"]
        device = str(next(model.net.parameters()).device)  # where the batches go (the ONNX path takes them from there)
        peaks = peaks_for_input(cc_input)
        started = time.perf_counter()
        canonical, reorientation = reorient_peaks(np.asarray(peaks.peaks, dtype=np.float32), peaks.affine,
                                                  self.orientation(), frame="world")
        cube, box = fit_to_cube(canonical, model.slice_size)
        probability = predict_cube(model.forward, cube, device=device, batch_size=32, progress=progress)
        full = restore_from_cube(probability, box, canonical.shape[:3])
        mask = reorientation.from_canonical((full >= self.spec.threshold).astype(np.uint8))
        info = {
            "model": {"folder": str(model.folder.resolve()), "sha256": model.sha256, "network": model.card["network"],
                      "validation_dice": model.card.get("validation", {}).get("dice_mean")},
            "device": device,
            "backend": model.backend,
            "inference": {"axes": "x,y,z", "fusion": "mean probability", "threshold": self.spec.threshold,
                          "peak_signs": "canonicalised: peaks are axes (a peak and its negative give one mask)",
                          "seconds": round(time.perf_counter() - started, 3)},
            **peaks.info(),
        }
        artifacts = {}
        if self.options.save_peaks:
            from segkit.tasks.cc_fodf.peaks import save_peaks

            artifacts["peaks"] = lambda path: save_peaks(peaks.peaks, cc_input.image, path)
        return Inferred(mask * self.spec.labels[0].values[0], info, artifacts)
