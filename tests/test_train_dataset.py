"""`segkit train` refuses bad nnU-Net datasets with one line and exit 2, before any compute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.engines.nnunet.dataset import DatasetError, validate_dataset
from synthetic_cord import LAS_AFFINE, write_dataset

SEGKIT = str(Path(sys.executable).with_name("segkit"))


@pytest.fixture
def dataset(tmp_path) -> Path:
    return write_dataset(tmp_path / "Dataset555_Tiny", n_cases=3)


def _edit_json(root: Path, **changes) -> None:
    path = root / "dataset.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_a_good_dataset_passes(dataset):
    summary = validate_dataset(dataset, orientation="LAS")
    assert summary.cases == ("cord_000", "cord_001", "cord_002") and summary.channels == ("T2w",)


def test_missing_dataset_json(dataset):
    (dataset / "dataset.json").unlink()
    with pytest.raises(DatasetError, match="dataset.json.*missing"):
        validate_dataset(dataset)


def test_undeclared_label_value(dataset):
    _edit_json(dataset, labels={"background": 0, "sc": 1})  # the files also hold 2 (lesion)
    with pytest.raises(DatasetError, match=r"label value\(s\) \[2\] are not declared"):
        validate_dataset(dataset)


def test_missing_channel_file(dataset):
    _edit_json(dataset, channel_names={"0": "T2w", "1": "T1w"})
    with pytest.raises(DatasetError, match="cord_000_0001.nii.gz: missing"):
        validate_dataset(dataset)


def test_spacing_mismatch_between_image_and_label(dataset):
    label = dataset / "labelsTr" / "cord_001.nii.gz"
    img = nib.load(label)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), LAS_AFFINE @ np.diag([1.5, 1, 1, 1])), label)
    with pytest.raises(DatasetError, match="cord_001_0000.nii.gz: spacing 1x1x2 differs"):
        validate_dataset(dataset)


def test_shape_mismatch_between_image_and_label(dataset):
    label = dataset / "labelsTr" / "cord_002.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((48, 48, 30), np.uint8), LAS_AFFINE), label)
    with pytest.raises(DatasetError, match="shape .* differs"):
        validate_dataset(dataset)


def test_wrong_orientation_for_the_task(dataset):
    with pytest.raises(DatasetError, match="stored in LAS orientation but this task's models see RAS"):
        validate_dataset(dataset, orientation="RAS")


def test_num_training_mismatch(dataset):
    _edit_json(dataset, numTraining=5)
    with pytest.raises(DatasetError, match="numTraining is 5"):
        validate_dataset(dataset)


def test_cli_bad_dataset_is_one_line_exit_2_and_starts_nothing(dataset, tmp_path):
    (dataset / "imagesTr" / "cord_001_0000.nii.gz").unlink()
    out = tmp_path / "model"
    env = {**os.environ, "SEGKIT_HOME": str(tmp_path / "home")}
    result = subprocess.run([SEGKIT, "train", "--data", str(dataset), "-o", str(out)], capture_output=True, encoding="utf-8", env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segkit: error:") and "cord_001_0000.nii.gz: missing" in lines[0]
    assert not out.exists()  # no workspace, no log: nothing ran


def test_cli_train_refuses_a_task_of_another_framework(dataset, tmp_path):
    env = {**os.environ, "SEGKIT_HOME": str(tmp_path / "home")}
    result = subprocess.run([SEGKIT, "train", "-task", "medsam", "--data", str(dataset)], capture_output=True, encoding="utf-8", env=env, timeout=120)
    assert result.returncode == 2 and "task 'medsam' runs its published weights; segkit has no trainer" in result.stderr
    # ais_ncct trains on head CT only: this MR dataset is refused before anything runs
    not_ct = subprocess.run([SEGKIT, "train", "-task", "ais_ncct", "--data", str(dataset), "-o", str(tmp_path / "ais")],
                            capture_output=True, encoding="utf-8", env=env, timeout=120)
    assert not_ct.returncode == 2 and "not a head CT in HU" in not_ct.stderr, not_ct.stderr
    assert len(not_ct.stderr.strip().splitlines()) == 1 and not (tmp_path / "ais").exists()


def test_cli_a_numbered_fold_needs_five_cases(dataset, tmp_path):
    out = tmp_path / "model"
    env = {**os.environ, "SEGKIT_HOME": str(tmp_path / "home")}
    result = subprocess.run([SEGKIT, "train", "--data", str(dataset), "-o", str(out), "--fold", "0"],
                            capture_output=True, encoding="utf-8", env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "3 training case(s)" in lines[0] and "--fold all" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("where", ["the data folder", "a folder inside it"])
def test_cli_train_refuses_an_output_in_the_data_it_reads(dataset, tmp_path, where):
    env = {**os.environ, "SEGKIT_HOME": str(tmp_path / "home")}
    out = dataset if where == "the data folder" else dataset / "imagesTr" / "run"
    before = sorted(p.relative_to(dataset) for p in dataset.rglob("*"))
    result = subprocess.run([SEGKIT, "train", "--data", str(dataset), "-o", str(out)], capture_output=True,
                            encoding="utf-8", env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "which training reads" in result.stderr
    assert sorted(p.relative_to(dataset) for p in dataset.rglob("*")) == before
