"""lpm_nnsam2 bad input: one line on stderr, exit 2, nothing written (no model is loaded)."""

from __future__ import annotations

from functools import partial

import nibabel as nib
import numpy as np
import pytest

from lpm_cli import run_segkit
from segkit.phantoms.lumbar import make_lumbar_phantom, save_lumbar_phantom, single_slice_support


segkit = partial(run_segkit, timeout=600)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("lpm_inputs")
    support = make_lumbar_phantom(0, shape=(56, 48, 4), spacing=(2.0, 2.0, 4.0))
    paths = save_lumbar_phantom(support, folder, "sup")
    target = save_lumbar_phantom(make_lumbar_phantom(1, shape=(56, 48, 4), spacing=(2.0, 2.0, 4.0)), folder, "tgt")
    masks = {
        "good": single_slice_support(support.labels),
        "empty": np.zeros_like(support.labels),
        "label3": np.where(single_slice_support(support.labels) == 2, 3, single_slice_support(support.labels)),
    }
    for name, array in masks.items():
        nib.save(nib.Nifti1Image(array.astype(np.uint8), support.affine), str(folder / f"mask_{name}.nii.gz"))
    shifted = support.affine.copy()
    shifted[0, 3] += 5.0
    nib.save(nib.Nifti1Image(masks["good"].astype(np.uint8), shifted), str(folder / "mask_moved.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((56, 48), np.float32), support.affine), str(folder / "target_2d.nii.gz"))
    return {"folder": folder, "support": paths["ct"], "target": target["ct"]}


@pytest.mark.parametrize(
    "mask, target, message",
    [
        ("mask_empty", None, "no labelled slice"),
        ("mask_moved", None, "support mask affine differs from its image"),
        ("mask_label3", None, "label value(s) [3] are not declared"),
        ("mask_good", "target_2d.nii.gz", "expected 3D"),
    ],
)
def test_bad_input_exits_2_with_one_line(data, tmp_path, mask, target, message):
    folder = data["folder"]
    target_path = folder / target if target else data["target"]
    done = segkit(
        "segment", "-task", "lpm_nnsam2", "-i", str(target_path), "--support", str(data["support"]),
        "--support-mask", str(folder / f"{mask}.nii.gz"), "--propagator", "litemedsam", "-o", str(tmp_path / "out") + "/",
        home=tmp_path / "home",
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_sam2_without_weights_names_the_offline_propagator(data, tmp_path):
    done = segkit(
        "segment", "-task", "lpm_nnsam2", "-i", str(data["target"]), "--support", str(data["support"]),
        "--support-mask", str(data["folder"] / "mask_good.nii.gz"), "-o", str(tmp_path / "out") + "/", home=tmp_path / "home",
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not installed" in lines[0] and "--propagator litemedsam" in lines[0]


def test_missing_support_is_refused(data, tmp_path):
    done = segkit("segment", "-task", "lpm_nnsam2", "-i", str(data["target"]), home=tmp_path / "home")
    assert done.returncode == 2 and "--support" in done.stderr


def test_resume_is_refused_not_ignored(data, tmp_path):
    """lpm_nnsam2 cannot continue a run (it would pseudo-label and train round 1 again): --resume is
    a clear exit 2, before any work, not an option silently dropped."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "c1.nii.gz").write_bytes(data["target"].read_bytes())
    done = segkit(
        "train", "-task", "lpm_nnsam2", "--images", str(images), "--support", str(data["support"]),
        "--support-mask", str(data["folder"] / "mask_good.nii.gz"), "--propagator", "litemedsam",
        "-o", str(tmp_path / "run"), "--resume", home=tmp_path / "home",
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot --resume" in lines[0], done.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
