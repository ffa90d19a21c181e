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
