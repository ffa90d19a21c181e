"""Issue 18 item 6: every sidecar records each post-processing option as a field (set or not), from
the shared task layer, so it holds for every task; here cc_fodf and medsam."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit import api

torch = pytest.importorskip("torch")


@pytest.fixture
def cc_package(tmp_path) -> Path:
    from segkit.registry.store import sha256_of
    from segkit.tasks.cc_fodf.network import NetworkConfig, build_network

    folder = tmp_path / "package"
    folder.mkdir()
    config = NetworkConfig(architecture="unet", slice_size=16, width=0.0625, sam_grid=7)
    torch.manual_seed(0)
    torch.save(build_network(config).state_dict(), str(folder / "model.pt"))
    card = {"format": "segkit-cc_fodf-model", "format_version": 1, "task": "cc_fodf", "network": config.to_dict(),
            "weights": {"file": "model.pt", "sha256": sha256_of(folder / "model.pt"), "epoch": 0}}
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder


def _peaks(path: Path) -> Path:
    data = np.zeros((12, 12, 10, 9), np.float32)
    data[2:10, 2:10, 2:8] = np.random.default_rng(0).normal(size=(8, 8, 6, 9))
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return path


def _sidecar(written) -> dict:
    (sidecar,) = [p for p in written if str(p).endswith(".json")]
    return json.loads(Path(sidecar).read_text())


def test_cc_fodf_sidecar_names_every_post_processing_option(tmp_path, segkit_home, cc_package):
    peaks = _peaks(tmp_path / "peaks.nii.gz")
    written = api.segment("cc_fodf", [peaks], model=cc_package, device="cpu", output=tmp_path / "a/",
                          largest=True, remove_small="16mm3")
    assert _sidecar(written)["postprocess"] == {
        "largest": True, "fill_holes": False, "remove_small": {"amount": 16.0, "unit": "mm3", "voxels": 2.0},
        "order": ["remove_small", "largest", "fill_holes"], "objects": "26-connected (8 in 2D)"}
    written = api.segment("cc_fodf", [peaks], model=cc_package, device="cpu", output=tmp_path / "b/")
    recorded = _sidecar(written)["postprocess"]
    assert (recorded["largest"], recorded["fill_holes"], recorded["remove_small"]) == (False, False, None)


def test_medsam_sidecar_names_every_post_processing_option(tmp_path, segkit_home):
    image = np.zeros((40, 40), np.float32)
    image[10:30, 12:28] = 100.0
    path = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(path))
    written = api.segment("medsam", [path], box=["8,8,32,32"], backend="torch", device="cpu",
                          output=tmp_path / "out/", fill_holes=True, remove_small="3vox")
    recorded = _sidecar(written)["postprocess"]
    assert recorded["fill_holes"] is True and recorded["largest"] is False
    assert recorded["remove_small"] == {"amount": 3.0, "unit": "vox", "voxels": 3.0}
