"""brats_autosam2 as a task: refusals (exit 2, one line, nothing written, inputs before weights),
the model package, SAM 2.1 tiny end to end (random weights: its real ones cannot be downloaded
here), gradients through the frozen SAM into the mapper and bridge, a training run through the
LiteMedSAM stage (--train-slice-percentage > 0) that moves them, and --resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.phantoms.brats import make_tumour_phantom, write_brats_case

SEGKIT = str(Path(sys.executable).with_name("segkit"))
SHAPE = (32, 32, 16)


def run(*args, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEGKIT_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("SEGKIT_REGISTRY", None)
    env.pop("SEGKIT_MIRROR", None)
    return subprocess.run([SEGKIT, *map(str, args)], capture_output=True, encoding="utf-8", env=env, timeout=900)


def random_package(folder: Path, sam: str = "litemedsam", width: float = 0.25) -> Path:
    """A model package holding an untrained AutoSAM2 (plumbing only)."""
    import torch

    from segkit.registry.store import sha256_of
    from segkit.tasks.brats_autosam2.hybrid import AutoSam2
    from segkit.tasks.brats_autosam2.network import NetworkConfig
    from segkit.tasks.brats_autosam2.package import PACKAGE_FORMAT

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    config = NetworkConfig(width=width)
    torch.save(AutoSam2(config).state_dict(), folder / "model.pt")
    card = {"format": PACKAGE_FORMAT, "task": "brats_autosam2", "network": config.to_dict(), "sam": sam,
            "weights": {"file": "model.pt", "sha256": sha256_of(folder / "model.pt")}}
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("brats_case")
    return write_brats_case(make_tumour_phantom(3, SHAPE), root, "BraTS-GLI-00003-000")


def _contrasts(case: Path) -> list[Path]:
    return [next(case.glob(f"*-{s}.nii.gz")) for s in ("t1n", "t1c", "t2w", "t2f")]


def _refusal(result, *needles, out: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_refusals_name_the_input_before_any_weights(case, tmp_path):
    t1, t1ce, t2, flair = _contrasts(case)
    home = tmp_path / "home"
    out = tmp_path / "out"
    three = run("segment", "-task", "brats_autosam2", "-i", t1, "-i", t1ce, "-i", t2, "-o", f"{out}/", home=home)
    _refusal(three, "four contrasts", out=out)
    shifted = tmp_path / "flair_shifted.nii.gz"
    image = nib.load(str(flair))
    affine = image.affine.copy()
    affine[0, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), str(shifted))
    moved = run("segment", "-task", "brats_autosam2", "-i", t1, "-i", t1ce, "-i", t2, "-i", shifted, "-o", f"{out}/", home=home)
    _refusal(moved, shifted.name, out=out)
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((32, 32), dtype=np.float32), np.eye(4)), str(flat))
    two_d = run("segment", "-task", "brats_autosam2", "-i", flat, "-i", flat, "-i", flat, "-i", flat, "-o", f"{out}/", home=home)
    _refusal(two_d, "flat.nii.gz", out=out)
    no_model = run("segment", "-task", "brats_autosam2", "-i", case, "-o", f"{out}/", home=home)
    _refusal(no_model, "no pretrained weights", "segkit train -task brats_autosam2", out=out)
    not_a_package = run("segment", "-task", "brats_autosam2", "-i", case, "--model", tmp_path, "-o", f"{out}/", home=home)
    _refusal(not_a_package, "model_card.json", out=out)


def test_tampered_weights_are_refused(case, tmp_path):
    from segkit.errors import SegkitError
    from segkit.tasks.brats_autosam2.package import load_package

    package = random_package(tmp_path / "pkg")
    with open(package / "model.pt", "ab") as handle:
        handle.write(b"0")
    with pytest.raises(SegkitError, match="does not match the model card"):
        load_package(package)


def test_the_unet_runs_through_onnx_runtime_as_through_torch(case, tmp_path):
    """--backend onnx exports the UNet once with dynamic spatial axes (checked at two sizes, cached
    under SEGKIT_HOME) and gives torch's label map; the sidecar names the backend. Width 0.5 and a
    random package: the logits of a random UNet are close to one another, a hard test of agreement."""
    package = random_package(tmp_path / "pkg", width=0.5)
    labels = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        done = run("segment", "-task", "brats_autosam2", *[a for p in _contrasts(case) for a in ("-i", p)],
                   "--model", package, "--slice-percentage", "0", "--backend", backend, "-o", f"{out}/",
                   home=tmp_path / "home")
        assert done.returncode == 0, done.stderr
        (written,) = out.glob("*_brats_seg.nii.gz")
        sidecar = json.loads(written.with_name(written.name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["backend"] == backend
        labels[backend] = np.asarray(nib.load(str(written)).dataobj)
    (manifest,) = (tmp_path / "home" / "cache" / "onnx" / "brats_autosam2").glob("*.onnx.json")
    facts = json.loads(manifest.read_text())
    assert facts["dynamic_spatial"] and len(facts["validation"]["max_abs_diff"]) == 2  # logits and mid
    assert len(np.unique(labels["torch"])) > 1
    assert (labels["onnx"] != labels["torch"]).mean() < 1e-3, (labels["onnx"] != labels["torch"]).sum()


@pytest.mark.slow
def test_segment_writes_one_label_map_in_input_geometry(case, tmp_path):
    """UNet only (slice percentage 0), the four contrasts given as loose -i files."""
    package = random_package(tmp_path / "pkg")
    out = tmp_path / "out"
    done = run("segment", "-task", "brats_autosam2", *[a for p in _contrasts(case) for a in ("-i", p)],
               "--model", package, "--slice-percentage", "0", "-o", f"{out}/", "--qc", tmp_path / "qc", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    (written,) = out.glob("*_brats_seg.nii.gz")
    image = nib.load(str(written))
    reference = nib.load(str(_contrasts(case)[0]))
    assert image.shape == reference.shape and np.allclose(image.affine, reference.affine)
    assert set(np.unique(np.asarray(image.dataobj))) <= {0, 1, 2, 3}
    sidecar = json.loads(written.with_name(written.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["labels_meaning"]["3"].startswith("ET") and sidecar["sam"] is None
    assert sidecar["model"]["sha256"] and sidecar["hybrid"]["slices_refined"] == []
    assert list((tmp_path / "qc").glob("*.png"))


@pytest.mark.slow
def test_sam21_tiny_runs_end_to_end_with_random_weights(case, tmp_path, monkeypatch):
    """The SAM 2.1 Hiera tiny stage (1024 px) on one slice, through segkit.api.segment."""
    from segkit import api
    from segkit.tasks.brats_autosam2 import sam_stage

    built = []

    def random_sam(choice, device="cpu", *, pretrained=True):
        built.append(choice)
        return sam_stage.SamStage(choice, __import__("segkit.models.sam", fromlist=["build_sam"]).build_sam(
            sam_stage.family_name(choice), device, pretrained=False))

    monkeypatch.setattr(sam_stage, "build_sam_stage", random_sam)
    package = random_package(tmp_path / "pkg", sam="sam2.1-tiny")
    written = api.segment("brats_autosam2", [case], model=package, slice_percentage=0.05, slice_rule="positional",
                          output=tmp_path / "out", device="cpu")
    assert built == ["sam2.1-tiny"]
    sidecar = json.loads(next(p for p in written if p.suffix == ".json").read_text())
    assert sidecar["sam"] == "sam2.1-tiny" and sidecar["hybrid"]["slices_chosen"] == [8]
    assert sidecar["hybrid"]["slices_refined"] == [8]  # an untrained UNet sees tumour everywhere: prompts exist
    labels = np.asarray(nib.load(str(next(p for p in written if p.name.endswith(".nii.gz")))).dataobj)
    assert labels.shape == SHAPE


@pytest.mark.slow
def test_gradients_reach_mapper_and_bridge_through_frozen_sam():
    import torch

    from segkit.tasks.brats_autosam2.hybrid import AutoSam2, HybridSettings
    from segkit.tasks.brats_autosam2.network import NetworkConfig
    from segkit.tasks.brats_autosam2.sam_stage import small_sam2_stage
    from segkit.training.losses import dice_bce_loss

    torch.manual_seed(0)
    model = AutoSam2(NetworkConfig(width=0.25)).attach_sam(small_sam2_stage(image_size=256))
    volume = torch.randn(1, 4, 16, 32, 32)
    output = model(volume, HybridSettings(slice_percentage=0.07, slice_rule="positional"))
    assert output.refined == [8]
    dice_bce_loss(output.probabilities, torch.zeros(16, 32, 32, dtype=torch.long)).backward()
    assert float(model.mapper.rgb.weight.grad.abs().sum()) > 0  # its learned branch (zero at first)
    assert float(model.bridge.out[1].weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in model.sam.parameters())
    assert "net.image_encoder" not in " ".join(model.state_dict())  # SAM never enters the package


def test_install_task_custom_url_registers_a_package_beside_the_sam_backbone(tmp_path, segkit_home):
    """The registry lists SAM 2.1 tiny for this task (role backbone); a trained package's zip installs
    beside it instead of being checked against SAM's sha256, and segment finds it without --model."""
    from segkit.registry.schema import load_registry
    from segkit.tasks.brats_autosam2.package import find_model_folder, load_package
    from segkit.training.package import zip_package

    package = random_package(tmp_path / "pkg")
    zip_package(package, tmp_path / "brats_autosam2_model.zip")
    installed = run("install-task", "brats_autosam2", "--custom-url", (tmp_path / "brats_autosam2_model.zip").as_uri(),
                    home=segkit_home)
    assert installed.returncode == 0, installed.stderr
    folder = find_model_folder(load_registry().get("brats_autosam2"), None)
    assert segkit_home in folder.parents
    assert load_package(folder)[1].sha256 == load_package(package)[1].sha256


def test_resume_continues_an_interrupted_run(tmp_path):
    from segkit.errors import SegkitError
    from segkit.phantoms.brats import write_brats_dataset
    from segkit.tasks.brats_autosam2.train import TrainConfig, train

    write_brats_dataset(tmp_path / "data", range(3), (16, 16, 16))
    config = dict(data=tmp_path / "data", output=tmp_path / "run", train_slice_percentage=0.0, unet_width=0.25,
                  patch_size=16, learning_rate=1e-3, epochs=2, iterations_per_epoch=1, device="cpu")

    def stop_after_first(event):
        if event.get("event") == "epoch":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**config), on_event=stop_after_first)
    with pytest.raises(SegkitError, match="--resume"):
        train(TrainConfig(**config))
    epochs = []
    result = train(TrainConfig(**config, resume=True), on_event=lambda e: epochs.append(e.get("epoch")))
    assert [e for e in epochs if e] == [2] and result["epochs_run"] == 2
    card = json.loads((result["model_dir"] / "model_card.json").read_text())
    assert [h["epoch"] for h in card["training"]["history"]] == [1, 2]


@pytest.mark.slow
def test_output_follows_the_input_orientation(case, tmp_path):
    """The same case stored LAS (x flipped) gives the RAS result flipped: the model always sees RAS."""
    from segkit import api

    package = random_package(tmp_path / "pkg")
    flipped = []
    for path in _contrasts(case):
        image = nib.load(str(path))
        las = np.diag([-1.0, 1.0, 1.0, 1.0])
        las[0, 3] = (image.shape[0] - 1)
        out = tmp_path / "las" / path.name
        out.parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[::-1].copy(), image.affine @ las), str(out))
        flipped.append(out)
    maps = []
    for inputs, folder in ((_contrasts(case), "ras_out"), (flipped, "las_out")):
        written = api.segment("brats_autosam2", inputs, model=package, slice_percentage=0.0, output=tmp_path / folder,
                              device="cpu")
        maps.append(nib.load(str(next(p for p in written if p.name.endswith(".nii.gz")))))
    assert np.allclose(maps[1].affine, nib.load(str(flipped[0])).affine)
    assert np.array_equal(np.asarray(maps[1].dataobj)[::-1], np.asarray(maps[0].dataobj))
    assert len(np.unique(np.asarray(maps[0].dataobj))) > 1  # not trivially empty


@pytest.mark.slow
def test_training_through_the_litemedsam_stage_trains_mapper_and_bridge(tmp_path):
    """`--train-slice-percentage > 0`: the training loop runs the hybrid with the real embedded LiteMedSAM
    frozen inside it, so the MRI-to-RGB mapper's learned branch (zero at initialisation) and the bridge
    move, and SAM's weights stay out of the package. The control, the UNet alone in training (0), leaves
    the mapper's branch at exactly zero: the assertion cannot pass without gradients through SAM."""
    import torch

    from segkit.phantoms.brats import write_brats_dataset
    from segkit.tasks.brats_autosam2.train import TrainConfig, train

    write_brats_dataset(tmp_path / "data", range(2), (16, 16, 16))  # one training case, one for validation
    common = dict(data=tmp_path / "data", sam="litemedsam", unet_width=0.25, patch_size=16, learning_rate=1e-3,
                  epochs=1, iterations_per_epoch=1, device="cpu")

    def packaged_weights(percentage: float, name: str) -> dict:
        result = train(TrainConfig(**common, output=tmp_path / name, train_slice_percentage=percentage))
        card = json.loads((result["model_dir"] / "model_card.json").read_text())
        assert card["sam"] == "litemedsam" and card["training"]["recipe"]["train_slice_percentage"] == percentage
        (weights,) = result["model_dir"].glob("*.pt")
        return torch.load(weights, weights_only=True, map_location="cpu")

    through_sam = packaged_weights(0.15, "hybrid")
    unet_only = packaged_weights(0.0, "unet")
    assert float(unet_only["mapper.rgb.weight"].abs().sum()) == 0.0
    assert float(through_sam["mapper.rgb.weight"].abs().sum()) > 0.0
    bridge = [k for k in through_sam if k.startswith("bridge.") and k.endswith("weight")]
    assert bridge and any(not torch.equal(through_sam[k], unet_only[k]) for k in bridge)
    assert not any("image_encoder" in k or k.startswith("sam.") for k in through_sam)  # SAM is never packaged
