"""`segkit train -task lpm_nnsam2` end to end at toy sizes (CPU, slow): pseudo-labels with the ignore
label, nnU-Net rounds with selection logs and Dice, and a package that `segment --model` runs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.phantoms.lumbar import make_lumbar_phantom, save_lumbar_phantom, single_slice_support

SHAPE, SPACING = (56, 48, 6), (2.0, 2.0, 4.0)


def segkit(*args: str, home: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("segkit")
    env = {**os.environ, "SEGKIT_HOME": str(home)}
    env.pop("SEGKIT_REGISTRY", None)
    return subprocess.run([str(exe), *args], env=env, capture_output=True, encoding="utf-8", timeout=3600)


@pytest.mark.slow
def test_two_rounds_give_a_model_package_that_segment_runs(tmp_path):
    support = make_lumbar_phantom(0, shape=SHAPE, spacing=SPACING)
    paths = save_lumbar_phantom(support, tmp_path, "sup")
    nib.save(nib.Nifti1Image(single_slice_support(support.labels), support.affine), str(tmp_path / "sup_mask.nii.gz"))
    images = tmp_path / "images"
    images.mkdir()
    for seed in (31, 32, 33):
        phantom = make_lumbar_phantom(seed, shape=SHAPE, spacing=SPACING)
        nib.save(nib.Nifti1Image(phantom.ct, phantom.affine), str(images / f"c{seed}.nii.gz"))
    package = tmp_path / "pkg"
    done = segkit(
        "train", "-task", "lpm_nnsam2", "--images", str(images), "--support", str(paths["ct"]),
        "--support-mask", str(tmp_path / "sup_mask.nii.gz"), "--rounds", "2", "--epochs", "1",
        "--iterations-per-epoch", "2", "--val-iterations-per-epoch", "1", "--device", "cpu", "-o", str(package),
        home=tmp_path / "home",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads((package / "model_card.json").read_text())
    assert [r["round"] for r in card["rounds"]] == [1, 2]
    for entry in card["rounds"]:
        assert (package / entry["model_zip"]).is_file()
        rows = list(csv.DictReader((package / entry["selection_log"]).open(), delimiter="\t"))
        assert len(rows) == 3 and sum(r["kept"] == "True" for r in rows) == 2  # max(2, 20%)
        assert 0.0 <= entry["dice_vs_previous"] <= 1.0
    # round 1: unselected slices carry the ignore label (3), declared as "ignore" in dataset.json
    dataset = package / "round_1" / "dataset"
    assert json.loads((dataset / "dataset.json").read_text())["labels"]["ignore"] == 3
    label_values = set()
    for path in (dataset / "labelsTr").iterdir():
        label_values |= set(np.unique(np.asarray(nib.load(path).dataobj)).tolist())
    assert 3 in label_values
    # the final model runs on a new scan, in that scan's geometry
    new = save_lumbar_phantom(make_lumbar_phantom(50, shape=SHAPE, spacing=SPACING), tmp_path / "new", "n50")
    done = segkit("segment", "-task", "lpm_nnsam2", "-i", str(new["ct"]), "--model", str(package), "-o", str(tmp_path / "out") + "/",
                  home=tmp_path / "home")
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("lpm_right", "lpm_left"):
        img = nib.load(tmp_path / "out" / f"n50_ct_{name}_seg.nii.gz")
        assert img.shape == SHAPE and set(np.unique(np.asarray(img.dataobj))) <= {0, 1}
