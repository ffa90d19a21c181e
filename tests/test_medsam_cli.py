"""`segkit segment -task medsam` end to end, through a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def segkit(*args: str, home: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("segkit")
    env = {**os.environ, "SEGKIT_HOME": str(home)}
    env.pop("SEGKIT_REGISTRY", None)
    return subprocess.run([str(exe), *args], env=env, capture_output=True, encoding="utf-8", timeout=600)


@pytest.fixture
def volume(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    grid = np.meshgrid(*[np.arange(n) for n in (48, 40, 6)], indexing="ij")
    blob = ((grid[0] - 24) / 12) ** 2 + ((grid[1] - 20) / 9) ** 2 <= 1
    data = (np.where(blob, 200.0, 40.0) + rng.normal(0, 8, blob.shape)).astype(np.float32)
    affine = np.diag([-0.8, 0.8, 2.0, 1.0])  # a flipped, anisotropic image
    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["--box", "1,2,3,60,20,5"], "outside the image along axis 0"),
        (["--box", "10,2,3,5,20,5"], "empty along axis 0"),
        (["--box", "1,2,3,4"], "6 integers"),
        ([], "needs a prompt"),
    ],
)
def test_bad_prompts_exit_2_with_one_line_and_no_output(volume, tmp_path, args, message):
    done = segkit("segment", "-task", "medsam", "-i", str(volume), "-o", str(tmp_path / "out"), *args, home=tmp_path / "home")
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_one_slice_writes_mask_sidecar_and_qc(volume, tmp_path):
    out, qc = tmp_path / "out", tmp_path / "qc"
    done = segkit(
        "segment", "-task", "medsam", "-i", str(volume), "--box", "10,8,34,32", "--slice", "3", "--axis", "2",
        "-o", str(out), "--qc", str(qc), "--backend", "torch", "--device", "cpu", home=tmp_path / "home",
    )
    assert done.returncode == 0, done.stderr
    mask_img = nib.load(out / "sub-01_T1w_seg.nii.gz")
    mask = np.asarray(mask_img.dataobj)
    assert mask.shape == (48, 40, 6) and np.allclose(mask_img.affine, nib.load(volume).affine)
    assert mask[:, :, 3].sum() > 200 and mask.sum() == mask[:, :, 3].sum()  # only the prompted slice
    sidecar = json.loads((out / "sub-01_T1w_seg.json").read_text())
    assert sidecar["backend"] == "torch" and sidecar["device"] == "cpu" and sidecar["task"] == "medsam"
    assert sidecar["model"]["sha256"].startswith("79d8c9dc")
    assert sidecar["prompts"][0]["lo"] == [10, 8, 3]
    assert len(list(qc.glob("*.png"))) == 3
