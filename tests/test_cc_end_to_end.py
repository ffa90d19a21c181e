"""cc_fodf end to end: raw DWI -> peaks -> mask in the input's geometry -> `segkit quantify --cc`,
the refusal without a model, and registering a trained package with install-task. The proof that a
CPU-trained SC2S-Net segments a held-out phantom is tests/test_cc_proof.py (reduced in CI, full size opt-in)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segkit.api import make_runner  # noqa: E402
from segkit.phantoms.cc_dwi import make_cc_phantom, write_cc_dataset, write_cc_subject  # noqa: E402
from segkit.tasks.cc_fodf import train as cc_train  # noqa: E402

SEGKIT = str(Path(sys.executable).with_name("segkit"))
SMALL_PHANTOM = dict(shape=(30, 34, 26), voxel_size=4.0)


def predict_one(files, model_dir, **options):
    """One cc_fodf prediction in process, through the task's runner (nothing written)."""
    runner = make_runner("cc_fodf", inputs=[files.dwi], device="cpu", bval=files.bval, bvec=files.bvec,
                         model=model_dir, **options)
    [prediction] = runner.predict_many(runner.cases(runner.common.inputs))
    return prediction


def _segkit(*args, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([SEGKIT, *map(str, args)], capture_output=True, encoding="utf-8", env=full_env)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small CNN trained for a few batches on phantom peaks: enough to exercise the geometry."""
    root = tmp_path_factory.mktemp("cc_data")
    write_cc_dataset(root / "data", 2, first_seed=10, as_peaks=True, **SMALL_PHANTOM)
    config = cc_train.TrainConfig(data=root / "data", output=root / "run", architecture="unet", slice_size=32,
                                  width=0.0625, epochs=1, batches_per_epoch=3, batch_size=8, device="cpu")
    return cc_train.train(config)


@pytest.fixture(scope="module")
def dwi_subject(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cc_subject")
    return write_cc_subject(make_cc_phantom(3, axcodes="LAS", **SMALL_PHANTOM), folder, "sub-003")


def test_segment_without_a_model_says_how_to_get_one(tmp_path, segkit_home, dwi_subject):
    result = _segkit("segment", "-i", dwi_subject.dwi, "-task", "cc_fodf", "--bval", dwi_subject.bval,
                     "--bvec", dwi_subject.bvec, "-o", tmp_path / "out/")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "no pretrained weights" in line and "segkit train -task cc_fodf" in line and "--model" in line
    assert not (tmp_path / "out").exists()


def test_dwi_to_mask_in_the_input_geometry_then_quantify_cc(tmp_path, segkit_home, tiny_model, dwi_subject):
    out = tmp_path / "out"
    result = _segkit("segment", "-i", dwi_subject.dwi, "-task", "cc_fodf", "--bval", dwi_subject.bval,
                     "--bvec", dwi_subject.bvec, "--model", tiny_model.model_dir, "--save-peaks",
                     "--device", "cpu", "-o", f"{out}/")
    assert result.returncode == 0, result.stderr
    mask_path = out / "sub-003_dwi_cc_seg.nii.gz"
    peaks_path = out / "sub-003_dwi_peaks.nii.gz"
    assert str(mask_path) in result.stdout and str(peaks_path) in result.stdout
    dwi = nib.load(str(dwi_subject.dwi))
    mask = nib.load(str(mask_path))
    assert mask.shape == dwi.shape[:3]
    np.testing.assert_allclose(mask.affine, dwi.affine, atol=1e-6)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    peaks = nib.load(str(peaks_path))
    assert peaks.shape == dwi.shape[:3] + (9,)
    sidecar = json.loads((out / "sub-003_dwi_cc_seg.json").read_text())
    assert sidecar["task"] == "cc_fodf" and sidecar["peaks_source"] == "dwi"
    assert sidecar["model"]["sha256"] == json.loads((tiny_model.model_dir / "model_card.json").read_text())["weights"]["sha256"]
    assert sidecar["inference"]["threshold"] == 0.5

    quantified = _segkit("quantify", "-m", mask_path, "--cc", "--format", "json")
    assert quantified.returncode == 0, quantified.stderr
    assert "area" in quantified.stdout.lower()


def test_the_mask_does_not_depend_on_how_the_dwi_is_stored(tmp_path, segkit_home, tiny_model):
    """The same subject stored RAS and LAS (FSL bvecs follow the storage) gives the same mask."""
    masks = {}
    for axcodes in ("RAS", "LAS"):
        files = write_cc_subject(make_cc_phantom(4, axcodes=axcodes, **SMALL_PHANTOM), tmp_path / axcodes, "sub")
        prediction = predict_one(files, tiny_model.model_dir, mask=files.brain_mask)
        assert prediction.outputs[0].mask.shape == nib.load(str(files.dwi)).shape[:3]
        masks[axcodes] = prediction.outputs[0].mask
    # LAS stores the first axis flipped: flip it back to compare voxel by voxel
    np.testing.assert_array_equal(masks["RAS"], masks["LAS"][::-1])


def test_a_3d_image_with_a_model_is_refused_with_what_the_task_needs(tmp_path, tiny_model):
    t2 = tmp_path / "sub-001_T2w.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(t2))
    result = _segkit("segment", "-i", t2, "-task", "cc_fodf", "--model", tiny_model.model_dir)
    assert result.returncode == 2
    assert "needs a 4D peaks file" in result.stderr and "--bval" in result.stderr


def test_install_task_custom_url_registers_the_trained_zip(tmp_path, segkit_home, tiny_model):
    installed = _segkit("install-task", "cc_fodf", "--custom-url", tiny_model.zip_path.resolve().as_uri())
    assert installed.returncode == 0, installed.stderr
    peaks = tmp_path / "sub_peaks.nii.gz"
    from segkit.phantoms.cc_dwi import write_phantom_peaks  # the generator's own peaks writer

    write_phantom_peaks(make_cc_phantom(5, **SMALL_PHANTOM), peaks)
    result = _segkit("segment", "-i", peaks, "-task", "cc_fodf", "--device", "cpu")  # no --model: the registered one
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((tmp_path / "sub_peaks_cc_seg.json").read_text())
    assert sidecar["peaks_source"] == "peaks"
    assert segkit_home.as_posix() in sidecar["model"]["folder"]


def test_train_command_for_cc_fodf(tmp_path, segkit_home):
    write_cc_dataset(tmp_path / "data", 2, first_seed=20, as_peaks=True, **SMALL_PHANTOM)
    result = _segkit("train", "-task", "cc_fodf", "--data", tmp_path / "data", "-o", tmp_path / "run",
                     "--architecture", "unet", "--slice-size", "32", "--width", "0.0625", "--epochs", "1",
                     "--iterations-per-epoch", "1", "--batch-size", "4", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "val Dice" in result.stderr  # the per-epoch line (a rich bar on a terminal)
    assert f"zip\t{tmp_path / 'run' / 'cc_fodf_model.zip'}" in result.stdout
    again = _segkit("train", "-task", "cc_fodf", "--data", tmp_path / "data", "-o", tmp_path / "run", "--epochs", "1")
    assert again.returncode == 2 and "--resume" in again.stderr



def test_flipping_peak_signs_leaves_the_trained_models_mask_unchanged(tmp_path, segkit_home, tiny_model):
    """Issue 18: peaks are axes. The held-out peaks with every x negated (another tool's frame), and
    with random per-voxel, per-peak sign flips, give the mask of the peaks as computed."""
    from segkit.phantoms.cc_dwi import write_phantom_peaks
    from segkit.tasks.cc_fodf.voxel_rule import dice

    peaks_path = write_phantom_peaks(make_cc_phantom(6, **SMALL_PHANTOM), tmp_path / "sub_peaks.nii.gz")
    image = nib.load(str(peaks_path))
    peaks = np.asarray(image.dataobj, dtype=np.float32)
    signs = np.random.default_rng(6).choice([-1.0, 1.0], size=peaks.shape[:3] + (3, 1)).astype(np.float32)
    variants = {"x_negated": peaks * np.tile([-1.0, 1.0, 1.0], 3).astype(np.float32),
                "random": (peaks.reshape(peaks.shape[:3] + (3, 3)) * signs).reshape(peaks.shape)}
    masks = {}
    for name, data in [("as_computed", peaks), *variants.items()]:
        path = tmp_path / name / "peaks.nii.gz"
        path.parent.mkdir()
        nib.save(nib.Nifti1Image(data, image.affine), str(path))
        runner = make_runner("cc_fodf", inputs=[path], device="cpu", model=tiny_model.model_dir)
        [prediction] = runner.predict_many(runner.cases(runner.common.inputs))
        masks[name] = prediction.outputs[0].mask > 0
    assert masks["as_computed"].sum() > 50  # the model marks something, so agreement can fail
    for name in variants:
        assert dice(masks[name], masks["as_computed"]) >= 0.99, name
