"""ais_ncct end to end: refusals (exit 2, one line, nothing written), segment with a model package
(input geometry, sidecar, mirror, cache), quantify --lesions, and train -> --resume -> package.

The packages here hold random weights (plumbing); the accuracy proof is benchmarks/bench_ais_ncct.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.phantoms.head_ct import make_head_phantom, write_head_ct_dataset

SEGKIT = str(Path(sys.executable).with_name("segkit"))
SHAPE = (32, 32, 6)
FOV = (200.0, 220.0, 36.0)


def _segkit(*args, home: Path):
    env = {**os.environ, "SEGKIT_HOME": str(home)}
    env.pop("SEGKIT_MIRROR", None)
    return subprocess.run([SEGKIT, *map(str, args)], capture_output=True, encoding="utf-8", env=env)


def _save(path: Path, data, affine=None) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory) -> Path:
    """A package written by the package writer around a random network (no training)."""
    return _random_package(tmp_path_factory.mktemp("ais_pkg") / "model", spacing_mm=None)


def _random_package(folder: Path, spacing_mm) -> Path:
    import torch

    from segkit.tasks.ais_ncct.network import NetworkConfig, build_network
    from segkit.tasks.ais_ncct.package import write_package

    torch.manual_seed(0)
    config = NetworkConfig(slice_size=32, depth=4, prompt_channels=(8, 16, 32, 64), feature_size=4)
    net = build_network(config, pretrained=False)
    stats = {"mean": 30.0, "std": 8.0, "percentile_00_5": 0.0, "percentile_99_5": 60.0}
    card = {"network": config.to_dict(), "backbone": {"name": "litemedsam", "pretrained": False},
            "spacing_mm": spacing_mm, "normalisation": [stats, stats], "training": {"validation_dice": None}}
    return write_package(folder, net.eval(), card)


def lesion_std(prepared) -> float:
    return float(np.concatenate([pre.whole(pre.stripped)[label > 0] for _, pre, label in prepared]).std())


def _refusal_cases(d: Path) -> list[tuple[list, str]]:
    phantom = make_head_phantom(0, shape=SHAPE, field_of_view_mm=FOV)
    ct = _save(d / "ct.nii.gz", phantom.ct.astype(np.int16), phantom.affine)
    mr = _save(d / "mr.nii.gz", np.abs(phantom.ct) / 4.0, phantom.affine)
    flat = _save(d / "flat.nii.gz", phantom.ct[:, :, 2])
    thin = _save(d / "thin.nii.gz", phantom.ct[:, :, :2].copy(), phantom.affine)
    return [
        (["-i", mr, "--model", "PKG"], "not a head CT in HU"),
        (["-i", mr], "not a head CT in HU"),  # the input is checked before the missing model
        (["-i", flat, "--model", "PKG"], "a 2D image"),
        (["-i", thin, "--model", "PKG"], "needs at least 3 axial slices"),
        (["-i", ct], "has no pretrained weights"),
        (["-i", ct, "--model", "PKG", "--backbone", "sam_vit_b"], "trained with the litemedsam backbone"),
    ]


def test_refusals_are_one_line_exit_2_and_write_nothing(tmp_path, tiny_package):
    for args, message in _refusal_cases(tmp_path):
        before = sorted(p.name for p in tmp_path.iterdir())
        args = [tiny_package if a == "PKG" else a for a in args]
        result = _segkit("segment", "-task", "ais_ncct", *args, home=tmp_path / "home")
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == [b for b in before if b != "home"]


@pytest.mark.slow
def test_segment_writes_input_geometry_sidecar_mirror_and_caches(tmp_path, tiny_package):
    phantom = make_head_phantom(5, shape=SHAPE, field_of_view_mm=FOV)
    las = phantom.affine.copy()
    las[0, 0] *= -1  # stored L->R flipped: the runner must reorient to RAS and back
    data = phantom.ct[::-1].astype(np.int16)
    ct = _save(tmp_path / "ct.nii.gz", data, las)
    result = _segkit("segment", "-task", "ais_ncct", "-i", ct, "--model", tiny_package, "--save-mirror",
                     "--save-brain-mask", "--qc", tmp_path / "qc", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((tmp_path / "ct_lesion_seg.json").read_text())
    seg = nib.load(tmp_path / "ct_lesion_seg.nii.gz")
    assert seg.shape == data.shape and np.allclose(seg.affine, las)
    assert sidecar["backbone"]["name"] == "litemedsam" and sidecar["registration"]["residual_hu"] > 0
    assert sidecar["registration"]["residual_hu"] < sidecar["registration"]["residual_hu_before"]
    brain = np.asarray(nib.load(tmp_path / "ct_brain.nii.gz").dataobj) > 0
    from segkit.tasks.ais_ncct.ct import strip_skull

    expected = strip_skull(data[::-1].astype(np.float32), phantom.truth["spacing_mm"])  # in RAS
    assert np.array_equal(brain[::-1], expected)  # saved in the input's own (LAS) order
    assert 2 * (expected & (phantom.brain > 0)).sum() / (expected.sum() + phantom.brain.sum()) > 0.95
    mirror = np.asarray(nib.load(tmp_path / "ct_mirror.nii.gz").dataobj)
    assert mirror.shape == data.shape and not np.any(mirror[~brain])
    assert np.asarray(seg.dataobj)[~brain].sum() == 0
    assert list((tmp_path / "qc").glob("ct_lesion_seg_qc*.png"))


@pytest.mark.slow
def test_a_model_at_another_spacing_segments_in_the_input_grid(tmp_path):
    """The CT is resampled to the model's spacing (finer in-plane here) and the lesion probability
    back onto the input's grid: the mask is written in the input's shape and affine, inside the brain."""
    spacing = [FOV[0] / SHAPE[0] * 0.75, FOV[1] / SHAPE[1] * 0.75, FOV[2] / SHAPE[2]]
    package = _random_package(tmp_path / "model", spacing_mm=spacing)
    phantom = make_head_phantom(6, shape=SHAPE, field_of_view_mm=FOV)
    ct = _save(tmp_path / "ct.nii.gz", phantom.ct.astype(np.int16), phantom.affine)
    result = _segkit("segment", "-task", "ais_ncct", "-i", ct, "--model", package, "--save-brain-mask",
                     home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((tmp_path / "ct_lesion_seg.json").read_text())
    assert sidecar["preprocessing"]["model_spacing_mm"] == pytest.approx(spacing)
    seg = nib.load(tmp_path / "ct_lesion_seg.nii.gz")
    assert seg.shape == SHAPE and np.allclose(seg.affine, phantom.affine)
    brain = np.asarray(nib.load(tmp_path / "ct_brain.nii.gz").dataobj) > 0
    assert np.asarray(seg.dataobj)[~brain].sum() == 0


def test_inference_works_on_the_brain_box_as_nnunet_trained_on_it():
    """lesion_probability crops both channels to the brain's box (nnU-Net's crop_to_nonzero) before it
    normalises, so the windows hold the box and zero padding, never the normalised 0 HU around the
    head; the probability is the network's inside the box and 0 outside it."""
    import torch

    from segkit.tasks.ais_ncct.inference import lesion_probability
    from segkit.tasks.ais_ncct.intensity import CTStats, normalise_ct
    from segkit.tasks.ais_ncct.pipeline import CasePreprocessed

    seen = []

    class EchoChannelZero(torch.nn.Module):  # lesion logit = channel 0, background logit 0
        def forward(self, x):
            seen.append(x.clone())
            return torch.stack([torch.zeros_like(x[:, 0]), x[:, 0]], dim=1)

    rng = np.random.default_rng(0)
    brain = np.zeros((20, 18, 6), dtype=bool)
    box = (slice(5, 12), slice(4, 15), slice(1, 5))
    brain[box] = True
    stripped = np.where(brain, rng.normal(30.0, 5.0, brain.shape), 0.0).astype(np.float32)
    case = CasePreprocessed.from_whole(stripped, (1.0, 1.0, 1.0), brain, stripped, stripped[::-1].copy())
    assert case.box == box and case.stripped.shape == (7, 11, 4)
    stats = {"mean": 30.0, "std": 5.0, "percentile_00_5": 15.0, "percentile_99_5": 45.0}
    card = {"spacing_mm": None, "normalisation": [stats, stats], "network": {"slice_size": 16, "depth": 4}}
    probability = lesion_probability(EchoChannelZero(), case, card)
    normalised = normalise_ct(stripped[box], CTStats.from_dict(stats))
    np.testing.assert_allclose(probability[box], 1.0 / (1.0 + np.exp(-normalised)), rtol=1e-5)
    outside = np.ones(brain.shape, dtype=bool)
    outside[box] = False
    assert not probability[outside].any()
    (window,) = seen  # one 4x16x16 window, the 4x7x11 box in its middle (nnU-Net's padding), the rest zeros
    assert window.shape == (1, 2, 4, 16, 16)
    padding = torch.ones(window.shape, dtype=torch.bool)
    padding[:, :, :, 4:11, 2:13] = False
    assert not window[padding].any() and window[~padding].all()


def test_the_sliding_window_is_nnunets():
    """lesion_margin equals the logit margin of nnU-Net's own predictor (Gaussian weighting, its tile
    positions and padding, no mirroring) on a network whose output depends on the voxel's place in
    the window, on a volume larger than the patch on some axes and smaller on another."""
    from types import SimpleNamespace

    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from segkit.tasks.ais_ncct.inference import lesion_margin

    class ConvWithPlaceBias(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(2, 2, 3, padding=1)
            self.place = torch.nn.Parameter(torch.randn(2, 4, 16, 16))

        def forward(self, x):
            return self.conv(x) + self.place

    torch.manual_seed(0)
    net = ConvWithPlaceBias().eval()
    channels = np.random.default_rng(0).normal(size=(2, 37, 12, 9)).astype(np.float32)  # (2, X, Y, Z)
    ours = lesion_margin(net, channels, slice_size=16, depth=4)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, perform_everything_on_device=False,
                                device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    predictor.network = net
    predictor.configuration_manager = SimpleNamespace(patch_size=[4, 16, 16])
    predictor.label_manager = SimpleNamespace(num_segmentation_heads=2)
    logits = predictor.predict_sliding_window_return_logits(torch.from_numpy(np.transpose(channels, (0, 3, 1, 2)).copy()))
    theirs = np.transpose((logits[1] - logits[0]).float().numpy(), (1, 2, 0))
    assert ours.shape == channels.shape[1:]
    # nnU-Net keeps its Gaussian in float16, where a window's corners (about 3e-11 of its centre)
    # underflow to its smallest weight: voxels reached only by window corners (0.4% here) differ.
    # Uniform weights or segkit's former tile positions differ on 74-77% of the voxels.
    difference = np.abs(ours - theirs)
    assert np.median(difference) < 1e-3 and (difference > 0.02).mean() < 0.01


def test_mirror_is_registered_once_per_case(tmp_path):
    from segkit.tasks.ais_ncct.pipeline import preprocess_case

    phantom = make_head_phantom(7, shape=SHAPE, field_of_view_mm=FOV)
    first = preprocess_case(phantom.ct, phantom.truth["spacing_mm"], tmp_path / "cache")
    second = preprocess_case(phantom.ct, phantom.truth["spacing_mm"], tmp_path / "cache")
    assert (first.registration["cached"], second.registration["cached"]) == (False, True)
    assert np.array_equal(first.mirror, second.mirror)
    [entry] = list((tmp_path / "cache").iterdir())
    assert sorted(p.name for p in entry.iterdir()) == ["info.json", "mirror.npy", "transform.h5"]
    other = preprocess_case(phantom.ct + np.float32(1.0), phantom.truth["spacing_mm"], tmp_path / "cache")
    assert other.registration["cached"] is False  # another image, another entry


def test_quantify_lesions_counts_and_measures_ml(tmp_path):
    mask = np.zeros((20, 20, 10), np.uint8)
    mask[2:5, 2:5, 2:4] = 1  # 18 voxels
    mask[10:14, 10:14, 5:8] = 1  # 48 voxels
    affine = np.diag([0.5, 0.5, 3.0, 1.0])  # 0.75 mm3 per voxel
    path = _save(tmp_path / "ct_lesion_seg.nii.gz", mask, affine)
    result = _segkit("quantify", "-m", path, "--lesions", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.strip().splitlines()]
    volumes = sorted(float(r[rows[0].index("volume_ml")]) for r in rows[1:])
    assert volumes == pytest.approx([18 * 0.75 / 1000, 48 * 0.75 / 1000])


@pytest.mark.slow
def test_train_resume_and_the_package_segment_reads(tmp_path, segkit_home):
    """Training runs inside nnU-Net v2 (planner, preprocessor, loader, augmentation) with AISCT-SAM in the
    plans, resumes from nnU-Net's checkpoint, and ends in the package segment reads."""
    from segkit import api
    from segkit.engines.nnunet.checkpoint import load_checkpoint
    from segkit.tasks.ais_ncct.package import load_package

    write_head_ct_dataset(tmp_path / "data", range(3), shape=SHAPE, field_of_view_mm=FOV)
    options = dict(data=tmp_path / "data", output=tmp_path / "run", iterations_per_epoch=1, val_iterations_per_epoch=1,
                   patch_side=32, patch_depth=4, patches_per_batch=1, spacing="native", pretrained_backbone=False, seed=0,
                   learning_rate=3e-4)
    api.train("ais_ncct", epochs=1, **options)
    (model_dir,) = (tmp_path / "run" / "nnunet" / "nnUNet_results").glob("*/AisctSamTrainer__nnUNetPlans__3d_fullres")
    first = load_checkpoint(model_dir / "fold_0" / "checkpoint_final.pth")
    # --learning-rate reaches nnU-Net's optimiser (through the plan), poly-decayed from there
    assert first["current_epoch"] == 1 and first["logging"]["lrs"][0] == pytest.approx(3e-4)
    assert len(list((tmp_path / "run" / "mirror_cache").glob("*/info.json"))) == 3
    plans = json.loads((model_dir / "plans.json").read_text())
    planned = plans["configurations"]["3d_fullres"]
    assert planned["architecture"]["network_class_name"] == "segkit.tasks.ais_ncct.network.nnunet_network"
    assert planned["patch_size"] == [4, 32, 32] and planned["normalization_schemes"] == ["CTNormalization"] * 2
    splits = json.loads((tmp_path / "run" / "nnunet" / "nnUNet_preprocessed" / "Dataset502_AisNcct" / "splits_final.json").read_text())
    assert splits == [{"train": ["head_000", "head_001"], "val": ["head_002"]}]
    api.train("ais_ncct", epochs=2, resume=True, **options)
    assert load_checkpoint(model_dir / "fold_0" / "checkpoint_final.pth")["current_epoch"] == 2
    model = load_package(tmp_path / "run" / "model")
    card = model.card
    assert card["task"] == "ais_ncct" and card["training"]["epochs"] == 2
    assert card["training"]["recipe"]["lr"] == 3e-4 and card["training"]["recipe"]["grad_clip"] == 12.0
    # CT statistics from nnU-Net's fingerprint: the lesion voxels of every case, per channel (nnU-Net
    # draws 10000 of them per case with replacement, hence the tolerance; the brain's mean is 3-8 HU,
    # about one standard deviation, above the lesion's)
    from segkit.tasks.ais_ncct.dataset import prepare_cases, read_dataset

    prepared = prepare_cases(read_dataset(tmp_path / "data"), tmp_path / "run" / "mirror_cache")
    for channel, name in enumerate(("stripped", "mirror")):
        lesion = np.concatenate([pre.whole(getattr(pre, name))[label > 0] for _, pre, label in prepared])
        assert abs(card["normalisation"][channel]["mean"] - lesion.mean()) < 0.1 * lesion.std()
    # (the mirror's lesion voxels are heavy-tailed where it carries bone: its sampled deviation varies)
    assert card["normalisation"][0]["std"] == pytest.approx(lesion_std(prepared), rel=0.1)
    # what segment feeds the network is what nnU-Net trained on: the brain's box of both channels,
    # normalised with the package's statistics (outside the box training saw zero padding)
    import blosc2

    from segkit.tasks.ais_ncct.pipeline import model_channels

    preprocessed = tmp_path / "run" / "nnunet" / "nnUNet_preprocessed" / "Dataset502_AisNcct" / "nnUNetPlans_3d_fullres"
    for case, pre, _ in prepared:
        trained_on = blosc2.open(str(preprocessed / f"{case}.b2nd"), mode="r")[:]
        channels = model_channels(pre, None, card["normalisation"])
        np.testing.assert_allclose(np.transpose(channels, (0, 3, 1, 2)), trained_on, atol=1e-5)
    # nnU-Net's (S-I, R-L, A-P) spacing comes back as segkit's (R-L, A-P, S-I): the phantoms' own
    assert card["spacing_mm"] == pytest.approx([FOV[0] / SHAPE[0], FOV[1] / SHAPE[1], FOV[2] / SHAPE[2]])
    # the zip beside the package installs with --custom-url (not in place of the SAM ViT-B backbone
    # the registry lists), and `segment` without --model finds it
    from segkit.registry.schema import load_registry
    from segkit.tasks.ais_ncct.package import find_package

    api.install_task("ais_ncct", custom_url=(tmp_path / "run" / "ais_ncct_model.zip").as_uri())
    installed = find_package(load_registry().get("ais_ncct"), None)
    assert segkit_home in installed.parents and load_package(installed).sha256 == model.sha256
    with pytest.raises(Exception, match="was planned with patch_size"):  # not silently the old plan
        api.train("ais_ncct", epochs=3, resume=True, **{**options, "patch_side": 64})
    with pytest.raises(Exception, match="already holds a training run"):  # refused before any registration
        api.train("ais_ncct", epochs=3, **options)
    with pytest.raises(Exception, match="no checkpoint"):
        api.train("ais_ncct", epochs=1, resume=True, **{**options, "output": tmp_path / "fresh"})


def test_training_with_a_backbone_that_is_not_installed_is_refused_before_any_work(tmp_path):
    write_head_ct_dataset(tmp_path / "data", range(2), shape=SHAPE, field_of_view_mm=FOV)
    result = _segkit("train", "-task", "ais_ncct", "--data", tmp_path / "data", "--backbone", "sam_vit_b",
                     "-o", tmp_path / "run", home=tmp_path / "home")
    assert result.returncode == 2 and "not installed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
