"""Issue 18 item 5: `segkit train -task cc_fodf --preset cpu|paper`. Without a GPU and without a
preset, the paper's sizes are refused with their expected time per epoch (exit 2, one line, nothing
written); --preset paper then trains at them after saying that time; --preset cpu trains at the
documented reduced sizes; explicit sizes override a preset's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from segkit.phantoms.cc_dwi import write_cc_dataset
from segkit.tasks.cc_fodf.presets import PRESETS, resolve_sizes

SEGKIT = str(Path(sys.executable).with_name("segkit"))


def options(**given):
    values = dict(preset=None, slice_size=None, width=None, sam_grid=None, batch_size=None)
    return SimpleNamespace(**{**values, **given})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cc_presets") / "data"
    write_cc_dataset(root, 2, first_seed=20, as_peaks=True, shape=(20, 22, 18), voxel_size=5.0)
    return root


def _segkit(*args, home: Path):
    env = {**os.environ, "SEGKIT_HOME": str(home)}
    return subprocess.run([SEGKIT, *map(str, args)], capture_output=True, encoding="utf-8", env=env, timeout=1800)


def test_no_preset_on_a_cpu_is_refused_with_the_time_per_epoch(tmp_path, data):
    result = _segkit("train", "-task", "cc_fodf", "--data", data, "-o", tmp_path / "run", "--device", "cpu",
                     home=tmp_path / "home")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "slice 144, width 1, SAM grid 64, batch 32" in line and "one epoch of 50 batches takes" in line
    assert "--preset paper" in line and "--preset cpu" in line
    assert not (tmp_path / "run").exists()


def test_preset_cpu_trains_at_the_documented_reduced_sizes(tmp_path, data):
    result = _segkit("train", "-task", "cc_fodf", "--data", data, "-o", tmp_path / "run", "--preset", "cpu",
                     "--architecture", "unet", "--epochs", "1", "--iterations-per-epoch", "1", "--device", "cpu",
                     home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "run" / "model" / "model_card.json").read_text())
    assert (card["network"]["slice_size"], card["network"]["width"]) == (48, 0.25)
    assert card["training"]["recipe"]["batch_size"] == 16
    assert "peak_signs" in card["input"]
    # --resume without a preset continues at the run's own sizes: no refusal on a CPU
    again = _segkit("train", "-task", "cc_fodf", "--data", data, "-o", tmp_path / "run", "--resume",
                    "--architecture", "unet", "--epochs", "2", "--iterations-per-epoch", "1", "--device", "cpu",
                    home=tmp_path / "home")
    assert again.returncode == 0, again.stderr
    assert "resuming at the run's own sizes (slice 48, width 0.25" in again.stderr
    card = json.loads((tmp_path / "run" / "model" / "model_card.json").read_text())
    assert card["training"]["epochs_run"] == 2 and card["training"]["recipe"]["batch_size"] == 16


def test_preset_paper_on_a_cpu_says_the_expected_time_and_goes_on():
    said = []
    sizes = resolve_sizes(options(preset="paper"), "unet", "cpu", 50, said.append)
    assert sizes == PRESETS["paper"]
    assert len(said) == 1 and "one epoch of 50 batches takes at least about" in said[0]


def test_sizes_on_a_gpu_and_explicit_sizes():
    said = []
    assert resolve_sizes(options(), "sc2snet", "cuda:0", 50, said.append) == PRESETS["paper"]
    assert "cuda:0" in said[0]
    assert resolve_sizes(options(preset="cpu", slice_size=64), "sc2snet", "cpu", 50, said.append) == \
        {**PRESETS["cpu"], "slice_size": 64}
    explicit = dict(slice_size=32, width=0.125, batch_size=8)  # every size a CNN-only network has
    assert resolve_sizes(options(**explicit), "unet", "cpu", 50, said.append) == {**PRESETS["paper"], **explicit}
    assert len(said) == 1  # nothing to say when nothing was chosen for the user
