"""Deterministic inputs and untrained-but-seeded models for the golden-output cases.

Everything here is a pure function of its seed. Weights are drawn with numpy's Generator in
sorted state-dict key order (not with torch's initialisers), so the numbers do not depend on the
torch version; only the bytes of the saved files may (torch.save), and those hashes are handed
back as `fixture_hashes` so the summaries can name them instead of printing them.

Images are built with numpy and nibabel only, except the phantoms, which come from
segkit.phantoms (their input fingerprints are recorded too, so a changed phantom shows up as a
changed input rather than a mysterious output diff).
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

FIXED_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float)), str(path))
    return path


def reoriented(data: np.ndarray, affine: np.ndarray, axcodes: str) -> nib.Nifti1Image:
    """The same voxels stored in another array orientation (nibabel axis codes)."""
    image = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float))
    return image.as_reoriented(ornt_transform(io_orientation(image.affine), axcodes2ornt(axcodes)))


def weights_fingerprint(state: dict) -> str:
    """sha256 over the sorted (name, shape, float32 bytes) of a state dict: torch-version independent."""
    digest = hashlib.sha256()
    for name in sorted(state):
        array = state[name].detach().cpu().numpy()
        digest.update(f"{name}{tuple(array.shape)}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def seeded_state_dict(module, seed: int) -> dict:
    """A state dict for `module` drawn from numpy (He-normal weights, zero biases, unit norms)."""
    import torch

    rng = np.random.default_rng(seed)
    state = {}
    for name, tensor in sorted(module.state_dict().items()):
        shape = tuple(tensor.shape)
        leaf = name.rsplit(".", 1)[-1]
        if not tensor.is_floating_point():
            value = tensor.clone()
        elif leaf == "running_var":
            value = torch.from_numpy(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        elif leaf == "running_mean":
            value = torch.from_numpy(rng.normal(0.0, 0.1, shape).astype(np.float32))
        elif leaf == "weight" and len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            value = torch.from_numpy(rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32))
        elif leaf == "weight":
            value = torch.from_numpy(rng.uniform(0.8, 1.2, shape).astype(np.float32))
        elif leaf == "bias":
            value = torch.from_numpy(rng.normal(0.0, 0.05, shape).astype(np.float32))
        else:  # positional embeddings, attention biases, ...
            value = torch.from_numpy(rng.normal(0.0, 0.02, shape).astype(np.float32))
        state[name] = value.to(tensor.dtype)
    return state


# ------------------------------------------------------------------------------ nnU-Net v2


CORD_SHAPE = (48, 48, 32)
# nibabel "LAS" (SCT's "RPI"), the SCIseg task's orientation; spacing 1 x 1 x 2 mm
CORD_AFFINE = np.array([[-1.0, 0, 0, 24.0], [0, 1.0, 0, -24.0], [0, 0, 2.0, -32.0], [0, 0, 0, 1]])

NNUNET_DATASET_JSON = {
    "channel_names": {"0": "T2w"},
    "labels": {"background": 0, "sc": [1, 2], "lesion": 2},
    "regions_class_order": [1, 2],
    "file_ending": ".nii.gz",
    "numTraining": 4,
    "name": "GoldenCord",
    "segkit_orientation": "LAS",
}

# nnunetv2 2.x's own planner (ExperimentPlanner) on four 48x48x32 synthetic cords, 3d_fullres only,
# with the feature counts shrunk 4x so that CPU inference takes about a second
NNUNET_PLANS = {
    "dataset_name": "Dataset777_GoldenCord",
    "plans_name": "nnUNetPlans",
    "original_median_spacing_after_transp": [2.0, 1.0, 1.0],
    "original_median_shape_after_transp": [32, 48, 48],
    "image_reader_writer": "SimpleITKIO",
    "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
    "configurations": {
        "3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres",
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2,
            "patch_size": [32, 48, 48],
            "median_image_size_in_voxels": [32.0, 48.0, 48.0],
            "spacing": [2.0, 1.0, 1.0],
            "normalization_schemes": ["ZScoreNormalization"],
            "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": 4,
                    "features_per_stage": [8, 16, 32, 64],
                    "conv_op": "torch.nn.modules.conv.Conv3d",
                    "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
                    "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
                    "n_conv_per_stage": [2, 2, 2, 2],
                    "n_conv_per_stage_decoder": [2, 2, 2],
                    "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                    "dropout_op": None,
                    "dropout_op_kwargs": None,
                    "nonlin": "torch.nn.LeakyReLU",
                    "nonlin_kwargs": {"inplace": True},
                },
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
            },
            "batch_dice": False,
        }
    },
    "experiment_planner_used": "ExperimentPlanner",
    "label_manager": "LabelManager",
    "foreground_intensity_properties_per_channel": {
        "0": {
            "max": 584.7918701171875,
            "mean": 351.8698425292969,
            "median": 350.08453369140625,
            "min": 301.80950927734375,
            "percentile_00_5": 318.0432434082031,
            "percentile_99_5": 551.1223754882812,
            "std": 23.026758193969727,
        }
    },
}

NNUNET_TRAINED_FOLDER = "Dataset777_GoldenCord/nnUNetTrainer__nnUNetPlans__3d_fullres"
# output-layer biases (sc region, lesion region): chosen so that both masks are non-trivial
NNUNET_SEG_BIAS = (0.0, -0.3)


def cord_image(seed: int = 4242) -> np.ndarray:
    """A 48x48x32 T2w-like volume (LAS): noisy background, a bright wandering cylinder with a blob."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = CORD_SHAPE
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    cx = nx / 2 + 3.0 * np.sin(z / 9.0)
    cy = ny / 2 - 2.0 + 0.1 * z
    cord = (x - cx) ** 2 + (y - cy) ** 2 <= 5.0**2
    blob = (x - cx) ** 2 + (y - cy) ** 2 + ((z - 17) * 2.0) ** 2 <= 2.5**2
    image = rng.normal(100.0, 12.0, CORD_SHAPE)
    image[cord] += 250.0
    image[blob & cord] += 200.0
    return image.astype(np.float32)


def write_cord_image(path: Path, axcodes: str, seed: int = 4242) -> Path:
    image = reoriented(cord_image(seed), CORD_AFFINE, axcodes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


def nnunet_files(channels: tuple[str, ...]) -> tuple[dict, dict]:
    """(dataset.json, plans.json) of the golden cord model taking these channels (in order)."""
    dataset = copy.deepcopy(NNUNET_DATASET_JSON)
    plans = copy.deepcopy(NNUNET_PLANS)
    if len(channels) > 1:
        dataset["channel_names"] = {str(i): name for i, name in enumerate(channels)}
        dataset["name"] = plans["dataset_name"] = f"GoldenCord{len(channels)}ch"
        config = plans["configurations"]["3d_fullres"]
        config["normalization_schemes"] = ["ZScoreNormalization"] * len(channels)
        config["use_mask_for_norm"] = [False] * len(channels)
        first = plans["foreground_intensity_properties_per_channel"]["0"]
        plans["foreground_intensity_properties_per_channel"] = {str(i): dict(first) for i in range(len(channels))}
    return dataset, plans


def build_nnunet_model(root: Path, seed: int = 7, channels: tuple[str, ...] = ("T2w",)) -> tuple[Path, str]:
    """An nnU-Net v2 results folder (dataset.json, plans.json, fold_0/checkpoint_final.pth) with
    seeded random weights, built by nnunetv2's own network factory; returns (the trained folder,
    the weights fingerprint)."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(root) / NNUNET_TRAINED_FOLDER
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    dataset, plans = nnunet_files(channels)
    manager = PlansManager(plans)
    configuration = manager.get_configuration("3d_fullres")
    heads = manager.get_label_manager(dataset).num_segmentation_heads
    network = nnUNetTrainer.build_network_architecture(manager, configuration, len(channels), heads,
                                                       enable_deep_supervision=False)
    state = seeded_state_dict(network, seed)
    last = max(k for k in state if k.startswith("decoder.seg_layers.") and k.endswith(".bias"))
    state[last] = torch.tensor(NNUNET_SEG_BIAS, dtype=torch.float32)
    network.load_state_dict(state, strict=True)  # proves the keys and shapes fit
    checkpoint = {
        "network_weights": state,
        "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
        "current_epoch": 1,
    }
    torch.save(checkpoint, str(folder / "fold_0" / "checkpoint_final.pth"))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    return folder, weights_fingerprint(state)


def zip_folder(source_root: Path, zip_path: Path) -> Path:
    """Zip every file under source_root with fixed timestamps (names relative to source_root)."""
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(p for p in Path(source_root).rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(source_root).as_posix(), date_time=FIXED_ZIP_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return zip_path


# ------------------------------------------------------------------------------ cc_fodf


CC_PHANTOM = dict(shape=(30, 34, 26), voxel_size=4.0)


def build_cc_package(folder: Path, architecture: str, seed: int, final_bias: float) -> tuple[Path, str]:
    """A cc_fodf model package (model.pt + model_card.json) at a tiny NetworkConfig, seeded weights;
    returns (the package folder, the weights fingerprint)."""
    import torch

    from segkit.tasks.cc_fodf.network import NetworkConfig, build_network

    config = NetworkConfig(architecture=architecture, slice_size=32, width=0.0625, sam_grid=7)
    network = build_network(config)
    state = seeded_state_dict(network, seed)
    finals = [k for k in state if k.endswith(".bias") and tuple(state[k].shape) == (1,)]
    for key in finals:  # the 1-channel output layer(s): moves the mask off all-or-nothing
        state[key] = torch.tensor([final_bias], dtype=torch.float32)
    network.load_state_dict(state, strict=True)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.pt"
    torch.save(state, str(weights))
    card = {
        "format": "segkit-cc_fodf-model",
        "format_version": 1,
        "task": "cc_fodf",
        "network": config.to_dict(),
        "weights": {"file": "model.pt", "sha256": sha256_file(weights), "epoch": 0},
        "input": {"channels": "9 peak channels (3 peaks x x,y,z), TractSeg/MRtrix convention", "orientation": "RAS"},
        "inference": {"axes": ["x", "y", "z"], "fusion": "mean probability", "threshold": 0.5},
        "validation": {"dice_mean": 0.5},
    }
    (folder / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    return folder, weights_fingerprint(state)


def write_cc_dwi(folder: Path, seed: int, axcodes: str, name: str):
    from segkit.phantoms.cc_dwi import make_cc_phantom, write_cc_subject

    return write_cc_subject(make_cc_phantom(seed, axcodes=axcodes, **CC_PHANTOM), folder, name)


def write_cc_peaks(path: Path, seed: int, axcodes: str) -> Path:
    """World-frame peaks of a phantom (segkit's dipy CSD inside the true brain mask), rounded to
    1e-3 so that the input itself is bit-stable."""
    from segkit.phantoms.cc_dwi import make_cc_phantom, write_phantom_peaks

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_name("raw_" + path.name)
    write_phantom_peaks(make_cc_phantom(seed, axcodes=axcodes, **CC_PHANTOM), raw)
    image = nib.load(str(raw))
    data = np.round(np.asarray(image.dataobj, dtype=np.float32), 3).astype(np.float32)
    nib.save(nib.Nifti1Image(data, image.affine), str(path))
    raw.unlink()
    return path


# ------------------------------------------------------------------------------ medsam


def mni_copy(path: Path) -> Path:
    """nilearn's MNI152 template (MNI152_FILE_PATH), copied byte for byte."""
    from nilearn.datasets import MNI152_FILE_PATH

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MNI152_FILE_PATH, path)
    return path


def mni_slice_2d(path: Path, k: int = 94) -> Path:
    """Axial slice k of the MNI152 template as a 2D NIfTI (same in-plane affine)."""
    import nibabel as nib
    from nilearn.datasets import MNI152_FILE_PATH

    image = nib.load(MNI152_FILE_PATH)
    return save_nifti(path, np.asarray(image.dataobj)[:, :, k], image.affine)


def ventricle_prompt_mask(reference: Path, path: Path) -> Path:
    """A coarse binary mask on the MNI grid: two boxes (both lateral ventricles) on slices 94-95."""
    image = nib.load(str(reference))
    mask = np.zeros(image.shape, dtype=np.uint8)
    mask[74:95, 92:140, 94:96] = 1
    mask[101:122, 92:140, 94:96] = 1
    return save_nifti(path, mask, image.affine)


# ------------------------------------------------------------------------------ eval / quantify


EVAL_AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, 0.9, 0, -12.0], [0, 0, 1.5, 3.0], [0, 0, 0, 1]])


def _ellipsoid(shape, centre, radii) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def labelled_pair(seed: int, shape=(40, 36, 24)) -> tuple[np.ndarray, np.ndarray]:
    """(reference, prediction) label maps with labels 1..3 (BraTS-like nesting), the prediction a
    shifted, eroded and noised copy of the reference."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    ref = np.zeros(shape, np.uint8)
    centre = np.array(shape) / 2 + rng.uniform(-2, 2, 3)
    ref[_ellipsoid(shape, centre, (12, 10, 7))] = 2
    ref[_ellipsoid(shape, centre, (7, 6, 4))] = 1
    ref[_ellipsoid(shape, centre + (1, 1, 0), (4, 3, 2.5))] = 3
    pred = np.roll(ref, (1, -1, 0), axis=(0, 1, 2))
    pred[ndimage.binary_erosion(pred == 2, iterations=1) ^ (pred == 2)] = 0
    flips = rng.random(shape) < 0.004
    pred[flips] = rng.integers(0, 4, int(flips.sum()))
    return ref, pred.astype(np.uint8)


def lesion_pair(shape=(30, 30, 20)) -> tuple[np.ndarray, np.ndarray]:
    """Binary (reference, prediction) with several lesions: hits, a miss, a false positive, a merge."""
    ref = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    ref[_ellipsoid(shape, (7, 7, 5), (3, 3, 2))] = 1
    pred[_ellipsoid(shape, (8, 7, 5), (3, 2.5, 2))] = 1
    ref[_ellipsoid(shape, (20, 8, 10), (2, 2, 2))] = 1  # missed
    pred[_ellipsoid(shape, (8, 22, 15), (2, 3, 2))] = 1  # false positive
    ref[_ellipsoid(shape, (21, 21, 6), (2, 2, 1.5))] = 1
    ref[_ellipsoid(shape, (21, 26, 6), (2, 1.5, 1.5))] = 1
    pred[21:23, 19:28, 5:8] = 1  # one prediction over two reference lesions
    return ref, pred


def cc_like_mask(shape=(40, 48, 30)) -> np.ndarray:
    """A thin arched slab about the mid-sagittal plane (RAS), as a corpus callosum mask."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    arch = 12 + 6.0 * np.cos((y - shape[1] / 2) / (shape[1] / 2.2) * np.pi / 2)
    return ((np.abs(x - shape[0] / 2) <= 6) & (np.abs(y - shape[1] / 2) <= 18) & (np.abs(z - arch) <= 1.6)).astype(np.uint8)
