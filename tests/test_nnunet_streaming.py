"""segkit's slab-at-a-time nnU-Net inference (segkit.engines.nnunet.streaming) against nnunetv2's own
whole-volume predict_single_npy_array, on seeded random-weight models built by nnunetv2's network
factory: the same labels, voxel for voxel, across the cases its plans produce (no resampling, 3D
spline resampling, separate-z, padding of a volume smaller than a patch, mirroring, two folds, CT
normalisation, two channels, region labels), with volumes several tiles deep so that rows finish
and leave the buffers many times over.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from golden import fixtures as fx

pytest.importorskip("nnunetv2")


def _model(root: Path, *, ct: bool = False, two_folds: bool = False, channels=("T2w",)) -> Path:
    folder, _ = fx.build_nnunet_model(root, seed=7, channels=channels)
    if ct:
        plans = json.loads((folder / "plans.json").read_text())
        plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["CTNormalization"]
        plans["foreground_intensity_properties_per_channel"]["0"].update(
            {"mean": 180.0, "std": 90.0, "percentile_00_5": 60.0, "percentile_99_5": 520.0})
        (folder / "plans.json").write_text(json.dumps(plans))
        _rewrite_checkpoint_plans(folder / "fold_0" / "checkpoint_final.pth", plans)
    if two_folds:
        import torch

        (folder / "fold_1").mkdir()
        checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=True)
        checkpoint["network_weights"] = {k: v * 0.9 if v.is_floating_point() else v
                                         for k, v in checkpoint["network_weights"].items()}
        torch.save(checkpoint, folder / "fold_1" / "checkpoint_final.pth")
    return folder


def _rewrite_checkpoint_plans(path: Path, plans: dict) -> None:
    import torch

    checkpoint = torch.load(path, weights_only=True)
    checkpoint["init_args"]["plans"] = plans
    torch.save(checkpoint, path)


def _predictor(folder: Path, tta: bool = False, backend: str = "torch"):
    from segkit.engines.nnunet.model_folder import load_model_folder
    from segkit.engines.nnunet.predictor import build_predictor

    model = load_model_folder(folder, folds=None)
    return build_predictor(model, "cpu", tta, backend)


def _volume(shape, seed: int = 3, offset: float = 0.0) -> np.ndarray:
    """(x, y, z) cord-like volume of any shape: a bright tube with noise, zero-padded borders."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    tube = (x - shape[0] / 2 - 3 * np.sin(z / 7.0)) ** 2 + (y - shape[1] / 2) ** 2 <= (min(shape[:2]) / 6) ** 2
    image = rng.normal(100.0 + offset, 12.0, shape) + 250.0 * tube
    image[:2] = 0  # a zero border: nnunetv2 crops to the non-zero box
    return image.astype(np.float32)


def _both(predictor, volume: np.ndarray, spacing_xyz) -> tuple[np.ndarray, np.ndarray]:
    from segkit.engines.nnunet.predictor import predict_whole_volume
    from segkit.engines.nnunet.streaming import predict_streaming

    spacing = [float(s) for s in spacing_xyz[::-1]]
    streamed = predict_streaming(predictor, [volume.transpose(2, 1, 0)], spacing)
    assert streamed is not None
    return streamed, predict_whole_volume(predictor, [volume], spacing)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("streaming")
    return {name: _model(root / name, **kwargs) for name, kwargs in
            {"zscore": {}, "ct": {"ct": True}, "folds": {"two_folds": True}}.items()}


@pytest.mark.parametrize("shape, spacing", [
    ((60, 50, 90), (1.0, 1.0, 2.0)),  # the model's spacing: no resampling, 5 tile rows
    ((70, 64, 100), (0.8, 0.8, 1.3)),  # 3D cubic spline to the model grid, linear back
    ((50, 44, 12), (0.7, 0.7, 5.0)),  # anisotropic: separate-z (in-plane, then nearest along z)
    ((40, 30, 20), (1.0, 1.0, 2.0)),  # smaller than a patch in-plane and in depth: zero padding
])
def test_streaming_equals_nnunetv2_voxel_for_voxel(models, shape, spacing):
    predictor = _predictor(models["zscore"])
    streamed, reference = _both(predictor, _volume(shape), spacing)
    assert streamed.shape == reference.shape
    assert (reference > 0).sum() > 100 and (reference == 2).sum() > 0  # both regions present
    assert np.array_equal(streamed, reference), f"{(streamed != reference).sum()} voxels differ"


@pytest.mark.parametrize("case", ["tta", "two_folds", "ct", "onnx"])
def test_streaming_equals_nnunetv2_with_each_option(models, case):
    folder = models["folds" if case == "two_folds" else "ct" if case == "ct" else "zscore"]
    predictor = _predictor(folder, tta=case == "tta", backend="onnx" if case == "onnx" else "torch")
    volume = _volume((52, 48, 70), offset=80.0 if case == "ct" else 0.0)
    streamed, reference = _both(predictor, volume, (0.9, 0.9, 1.7))
    assert (reference > 0).sum() > 100
    assert np.array_equal(streamed, reference), f"{(streamed != reference).sum()} voxels differ"


def test_two_channels_stream_and_match(tmp_path):
    from segkit.engines.nnunet.predictor import predict_label_map, predict_whole_volume

    predictor = _predictor(_model(tmp_path, channels=("T2w", "T1w")))
    channels = [_volume((48, 44, 60), seed=1), _volume((48, 44, 60), seed=2, offset=30.0)]
    affine = np.diag([1.1, 1.1, 1.9, 1.0])
    streamed = predict_label_map(predictor, channels, affine)
    reference = predict_whole_volume(predictor, channels, [1.9, 1.1, 1.1]).transpose(2, 1, 0)
    assert np.array_equal(streamed, reference), f"{(streamed != reference).sum()} voxels differ"


def test_plans_it_does_not_cover_go_to_nnunetv2(models, tmp_path):
    """A masked z-score needs the whole image's mask: refused here, so segkit uses nnunetv2's path."""
    from segkit.engines.nnunet.streaming import predict_streaming, streaming_refusal

    folder = tmp_path / "masked"
    shutil.copytree(models["zscore"], folder)
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["use_mask_for_norm"] = [True]
    (folder / "plans.json").write_text(json.dumps(plans))
    _rewrite_checkpoint_plans(folder / "fold_0" / "checkpoint_final.pth", plans)
    predictor = _predictor(folder)
    assert "use_mask_for_norm=True" in streaming_refusal(predictor)
    assert predict_streaming(predictor, [_volume((40, 30, 20)).transpose(2, 1, 0)], [2.0, 1.0, 1.0]) is None
