"""nnunetv2's own predictor, built once per model and device; arrays in, label map out.

Arrays are handed over in the axis order nnU-Net's SimpleITK/nibabel readers produce ((z, y, x),
spacing reversed), predicted with predict_single_npy_array (tile step 0.5, Gaussian weighting,
mirroring only with --tta), and the label map is returned in the caller's (x, y, z) order.
With the ONNX backend the predictor's network is segkit.engines.nnunet.onnx_network's.
"""

from __future__ import annotations

import numpy as np

from segkit.engines.nnunet.model_folder import ModelFolder
from segkit.errors import SegkitError
from segkit.runtime.quiet import printed_to_log

TILE_STEP_SIZE = 0.5


def build_predictor(model: ModelFolder, device_name: str, tta: bool, backend: str = "torch"):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from segkit.runtime.onnx_backend import choose_backend
    from segkit.runtime.device import resolve_device

    device = torch.device(resolve_device(device_name))
    try:
        with printed_to_log("nnunetv2"):  # nnunetv2 prints notes: --debug shows them; stdout is for results
            predictor = nnUNetPredictor(
                tile_step_size=TILE_STEP_SIZE,
                use_gaussian=True,
                use_mirroring=tta,
                perform_everything_on_device=device.type == "cuda",
                device=device,
                verbose=False,
                verbose_preprocessing=False,
                allow_tqdm=False,
            )
            _initialize(predictor, model)
    except (KeyError, RuntimeError, FileNotFoundError) as exc:
        raise SegkitError(f"{model.path}: cannot load the nnU-Net model ({type(exc).__name__}: {exc})") from None
    if choose_backend(backend, device.type) == "onnx":
        _use_onnx_network(predictor, model, str(device), backend)
    return predictor


def _use_onnx_network(predictor, model: ModelFolder, device: str, backend: str) -> None:
    from segkit.engines.nnunet.onnx_network import onnx_network
    from segkit.registry.fetch import sha256_cached
    from segkit.runtime.onnx_backend import onnx_or_torch

    hashes = [sha256_cached(path) for path in model.checkpoint_paths]
    predictor.network = onnx_or_torch(lambda: onnx_network(predictor, hashes, device), lambda: predictor.network, backend)


def network_backend(predictor) -> str:
    """What runs the predictor's network: "onnx" (segkit.engines.nnunet.onnx_network) or "torch"."""
    return getattr(predictor.network, "segkit_backend", "torch")


def _initialize(predictor, model: ModelFolder) -> None:
    """nnunetv2's initialize_from_trained_model_folder, except that segkit reads the checkpoints
    (weights only, segkit.engines.nnunet.checkpoint) instead of letting nnunetv2 unpickle them."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from segkit.engines.nnunet.checkpoint import load_checkpoint

    checkpoints = [load_checkpoint(path) for path in model.checkpoint_paths]
    first = checkpoints[0]
    plans_manager = PlansManager(model.plans)
    configuration = plans_manager.get_configuration(first["init_args"]["configuration"])
    _check_architecture_names(model, configuration)
    trainer_class = recursive_find_trainer_class_by_name(first["trainer_name"])
    if trainer_class is None:
        raise SegkitError(f"{model.path}: trainer {first['trainer_name']!r} is not part of nnunetv2")
    network = trainer_class.build_network_architecture(
        plans_manager, configuration,
        determine_num_input_channels(plans_manager, configuration, model.dataset_json),
        plans_manager.get_label_manager(model.dataset_json).num_segmentation_heads,
        enable_deep_supervision=False,
    )
    parameters = [c["network_weights"] for c in checkpoints]
    network.load_state_dict(parameters[0])
    predictor.manual_initialization(
        network, plans_manager, configuration, parameters, model.dataset_json, first["trainer_name"],
        first.get("inference_allowed_mirroring_axes"),
    )


# nnunetv2 imports the classes plans.json names (pydoc.locate): only network building blocks.
ARCHITECTURE_MODULES = ("dynamic_network_architectures.", "torch.nn.")


def _check_architecture_names(model: ModelFolder, configuration) -> None:
    kwargs = configuration.network_arch_init_kwargs
    names = [configuration.network_arch_class_name]
    names += [kwargs[k] for k in configuration.network_arch_init_kwargs_req_import if kwargs.get(k) is not None]
    for name in names:
        if not str(name).startswith(ARCHITECTURE_MODULES):
            raise SegkitError(f"{model.path}/plans.json: refused: names {name!r}, which is not a network building block")


def predict_label_map(predictor, channels: list[np.ndarray], affine: np.ndarray) -> np.ndarray:
    """Label map of (x, y, z) channel arrays whose voxel axes `affine` maps to world mm: a slab at a
    time (segkit.engines.nnunet.streaming) where the plan allows, else nnunetv2's whole-volume path."""
    from segkit.engines.nnunet.streaming import predict_streaming

    spacing = [float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0))[::-1]]
    with printed_to_log("nnunetv2"):
        label_map = predict_streaming(predictor, [np.asarray(a).transpose(2, 1, 0) for a in channels], spacing)
    if label_map is None:
        label_map = predict_whole_volume(predictor, channels, spacing)
    return np.asarray(label_map).transpose(2, 1, 0)


def predict_whole_volume(predictor, channels: list[np.ndarray], spacing) -> np.ndarray:
    """nnunetv2's predict_single_npy_array on (x, y, z) arrays; the label map in its (z, y, x) order."""
    # nnunetv2 copies its input before touching it ("let's not mess up the inputs"), so one channel
    # goes in as a view: a second full-size copy here cost 838 MB on a 512x512x800 volume
    if len(channels) == 1:
        stacked = np.asarray(channels[0]).transpose(2, 1, 0)[None]
    else:
        stacked = np.stack([a.transpose(2, 1, 0) for a in channels])
    stacked = stacked.astype(np.float32, copy=False)
    with printed_to_log("nnunetv2"):
        return predictor.predict_single_npy_array(stacked, {"spacing": spacing})
