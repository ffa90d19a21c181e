"""Issue 11 item 2: a checkpoint whose pickle would run code is refused (exit 2) and nothing in it runs.

Every checkpoint is crafted so that unpickling it the unsafe way (weights_only=False, as nnunetv2
does) creates a marker file; each test proves the marker never appears and segkit says why.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segkit.errors import SegkitError


class _RunsCode:
    """Unpickling this calls exec(), which writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _crafted_checkpoint(path: Path, marker: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": {"w": torch.zeros(2)}, "trainer_name": _RunsCode(marker)}, str(path))
    return path


def _nnunet_model_folder(root: Path, marker: Path) -> Path:
    """A trained-model folder layout (dataset.json, plans.json, fold_0/checkpoint_final.pth)."""
    folder = root / "Dataset001_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    folder.mkdir(parents=True)
    dataset = {"channel_names": {"0": "T2w"}, "labels": {"background": 0, "seg": 1}, "file_ending": ".nii.gz", "numTraining": 1}
    (folder / "dataset.json").write_text(json.dumps(dataset))
    (folder / "plans.json").write_text(json.dumps({"configurations": {}}))
    _crafted_checkpoint(folder / "fold_0" / "checkpoint_final.pth", marker)
    return folder


def _image(path: Path) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(path))
    return path


def test_the_crafted_checkpoint_does_run_code_when_unpickled_unsafely(tmp_path):
    """The premise: without segkit's loader, this file executes code."""
    import torch

    marker = tmp_path / "ran"
    torch.load(str(_crafted_checkpoint(tmp_path / "c.pth", marker)), weights_only=False)
    assert marker.exists()


def test_segment_with_a_crafted_nnunet_model_runs_nothing_and_exits_2(tmp_path, segkit_home):
    marker = tmp_path / "ran"
    model = _nnunet_model_folder(tmp_path / "model", marker)
    image = _image(tmp_path / "img.nii.gz")
    out = tmp_path / "out"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("segkit")), "segment", "--model", str(model), "-i", str(image), "-o", str(out),
         "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert not marker.exists()
    last = result.stderr.strip().splitlines()[-1]
    assert "refused" in last and "exec" in last and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_export_and_resume_read_checkpoints_as_data(tmp_path):
    from segkit.engines.nnunet.train import _inference_checkpoint
    from segkit.engines.nnunet.trainer import SegkitTrainer

    marker = tmp_path / "ran"
    path = _crafted_checkpoint(tmp_path / "fold_0" / "checkpoint_final.pth", marker)
    with pytest.raises(SegkitError, match="refused"):
        _inference_checkpoint(path)
    with pytest.raises(SegkitError, match="refused"):
        SegkitTrainer.load_checkpoint(object(), str(path))  # refused before the trainer is touched
    assert not marker.exists()


def test_task_model_packages_refuse_code(tmp_path):
    from segkit.models.sam import load_state_dict
    from segkit.training.checkpoints import restore

    marker = tmp_path / "ran"
    path = _crafted_checkpoint(tmp_path / "weights.pth", marker)
    with pytest.raises(SegkitError, match="refused"):
        load_state_dict("litemedsam", path)
    with pytest.raises(SegkitError, match="refused"):
        restore(path, None)  # every trainer's --resume reads last.pt through here
    assert not marker.exists()


def test_a_genuine_training_checkpoint_with_numpy_scalars_loads(tmp_path):
    """nnU-Net's training log holds numpy float32 scalars; the allow-list keeps them loadable."""
    import torch

    from segkit.engines.nnunet.checkpoint import load_checkpoint

    state = {
        "network_weights": {"w": torch.ones(3)},
        "logging": {"ema_fg_dice": [np.float32(0.5)], "lrs": [0.01]},
        "_best_ema": np.float64(0.7),
        "init_args": {"configuration": "3d_fullres", "device": torch.device("cpu")},
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    torch.save(state, str(tmp_path / "c.pth"))
    loaded = load_checkpoint(tmp_path / "c.pth")
    assert loaded["_best_ema"] == np.float64(0.7) and loaded["logging"]["ema_fg_dice"][0] == np.float32(0.5)
    assert torch.equal(loaded["network_weights"]["w"], torch.ones(3))


def test_a_truncated_checkpoint_is_one_clear_error(tmp_path):
    from segkit.engines.nnunet.checkpoint import load_checkpoint

    (tmp_path / "c.pth").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SegkitError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "c.pth")
