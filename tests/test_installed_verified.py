"""Issue 11 item 4: installed files are verified when used; a changed byte is exit 2 naming the fix."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import file_entry, task_entry, write_registry
from segkit.errors import TaskNotInstalledError
from segkit.registry.schema import load_registry
from segkit.registry.store import install_task, installed_task

SEGKIT = str(Path(sys.executable).with_name("segkit"))


def _flip_one_byte(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_installed_weights_is_exit_2_naming_install_force(tmp_path, segkit_home):
    weights = install_task(load_registry().get("medsam")).file_path("lite_medsam.pth")
    _flip_one_byte(weights)
    image = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((32, 32, 3)).astype(np.float32), np.eye(4)), str(image))
    result = subprocess.run([SEGKIT, "segment", "-task", "medsam", "-i", str(image), "--box", "4,4,1,20,20,1",
                             "-o", str(tmp_path / "out"), "--device", "cpu", "--backend", "torch"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "install-task medsam --force" in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_file_changed_after_its_first_check_is_caught_again(tmp_path, segkit_home):
    """The per-process cache is keyed by size and mtime: a rewrite is verified afresh."""
    payload = os.urandom(5000)
    source = tmp_path / "model.bin"
    source.write_bytes(payload)
    spec = load_registry(write_registry(tmp_path / "r.yaml", {"demo": task_entry("demo", [
        file_entry("model.bin", source.as_uri(), hashlib.sha256(payload).hexdigest(), len(payload))])})).get("demo")
    installed = install_task(spec)
    path = installed.file_path("model.bin")
    assert installed.verified_sha256("model.bin") == hashlib.sha256(payload).hexdigest()
    _flip_one_byte(path)
    with pytest.raises(TaskNotInstalledError, match="install-task demo --force"):
        installed.file_path("model.bin")
    path.write_bytes(payload[:-1])  # and a truncated one, by its size
    with pytest.raises(TaskNotInstalledError, match="size 4999"):
        installed_task("demo").file_path("model.bin")


def test_an_unpacked_model_is_verified_file_by_file(tmp_path, segkit_home):
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("M/fold_0/checkpoint_final.pth", b"weights" * 100)
        zf.writestr("M/plans.json", b"{}")
    data = archive.read_bytes()
    spec = load_registry(write_registry(tmp_path / "r.yaml", {"z": task_entry("z", [
        file_entry("m.zip", archive.as_uri(), hashlib.sha256(data).hexdigest(), len(data), unpack=True)])})).get("z")
    folder = install_task(spec).file_path("m.zip")
    _flip_one_byte(folder / "M" / "fold_0" / "checkpoint_final.pth", offset=10)
    with pytest.raises(TaskNotInstalledError, match="install-task z --force"):
        installed_task("z").file_path("m.zip")


@pytest.mark.slow
def test_the_sidecar_records_the_hash_of_the_file_used(tmp_path, segkit_home):
    from segkit import api

    image = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((32, 32, 3)).astype(np.float32), np.eye(4)), str(image))
    api.segment("medsam", [image], box=["4,4,1,20,20,1"], output=tmp_path / "out", device="cpu", backend="torch")
    sidecar = json.loads((tmp_path / "out" / "img_seg.json").read_text())
    weights = install_task(load_registry().get("medsam")).file_path("lite_medsam.pth")  # the model may come from the per-process cache
    assert sidecar["model"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
