"""`segkit quantify` on lumbar phantoms recovers the known LPM volumes, mean HU and Dixon fat ratio."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from segkit.phantoms.lumbar import LABEL_NAMES, make_lumbar_phantom, save_lumbar_phantom


def test_phantoms_differ_between_subjects_and_hold_both_modalities():
    a, b = make_lumbar_phantom(1), make_lumbar_phantom(2)
    assert a.labels.shape == b.labels.shape and not np.array_equal(a.labels, b.labels)
    assert set(np.unique(a.labels)) == {0, 1, 2}
    assert a.ct.min() < -500 and a.ct.max() > 500  # air and bone in HU
    for name in LABEL_NAMES.values():
        assert 0.02 < a.truth[name]["fat_fraction"] < 0.5
    first, last = a.labels[:, :, 0] == 1, a.labels[:, :, -1] == 1
    assert 2 * (first & last).sum() / (first.sum() + last.sum()) < 0.9  # muscle shape varies along z


def test_quantify_recovers_volume_hu_and_fat_ratio_in_a_pipeline(tmp_path):
    phantom = make_lumbar_phantom(5)
    files = save_lumbar_phantom(phantom, tmp_path, "p5")
    command = (
        f"{Path(sys.executable).with_name('segkit')} quantify -m {files['labels']} --volume --intensity -i {files['ct']} "
        f"--fat-ratio --fat {files['fat']} --water {files['water']} | cat"
    )
    done = subprocess.run(command, shell=True, capture_output=True, encoding="utf-8", env={**os.environ, "SEGKIT_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    rows = {int(r["label"]): r for r in csv.DictReader(io.StringIO(done.stdout), delimiter="\t")}
    for value, name in LABEL_NAMES.items():
        truth = phantom.truth[name]
        assert abs(float(rows[value]["volume_ml"]) - truth["volume_ml"]) <= 0.02 * truth["volume_ml"]
        assert abs(float(rows[value]["mean"]) - truth["mean_hu"]) < 2.0  # noise 12 HU over thousands of voxels
        assert abs(float(rows[value]["ff_pooled"]) - truth["fat_fraction"]) <= 0.02


def test_quantify_names_the_sides_and_takes_the_dixon_pair_once(tmp_path):
    """One label map with --task: rows say lpm_right / lpm_left; per-side files are named from their
    sidecars; --fat/--water given once serve every mask and imply --fat-ratio."""
    import json

    import nibabel as nib

    phantom = make_lumbar_phantom(6)
    files = save_lumbar_phantom(phantom, tmp_path, "p6")
    exe, env = str(Path(sys.executable).with_name("segkit")), {**os.environ, "SEGKIT_HOME": str(tmp_path)}
    env.pop("SEGKIT_REGISTRY", None)
    done = subprocess.run([exe, "quantify", "-m", str(files["labels"]), "--task", "lpm_nnsam2"], capture_output=True,
                          encoding="utf-8", env=env)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout), delimiter="\t"))
    assert [(r["label"], r["label_name"]) for r in rows] == [("1", "lpm_right"), ("2", "lpm_left")]
    per_side = []
    for value, name in LABEL_NAMES.items():
        path = tmp_path / f"p6_{name}_seg.nii.gz"
        nib.save(nib.Nifti1Image((phantom.labels == value).astype(np.uint8), phantom.affine), str(path))
        (tmp_path / f"p6_{name}_seg.json").write_text(json.dumps({"label": {"name": name, "value": value}}))
        per_side += ["-m", str(path)]
    done = subprocess.run([exe, "quantify", *per_side, "--fat", str(files["fat"]), "--water", str(files["water"])],
                          capture_output=True, encoding="utf-8", env=env)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout), delimiter="\t"))
    assert [r["label_name"] for r in rows] == ["lpm_right", "lpm_left"]
    for row in rows:
        assert abs(float(row["ff_pooled"]) - phantom.truth[row["label_name"]]["fat_fraction"]) <= 0.02
