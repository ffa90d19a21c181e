"""The task layer: options declared per task, CLI and API generated from them, a task added without
touching segkit (tests/tiny_task, registered from a test registry), outputs planned before compute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import REPO_ROOT, write_registry

TESTS = Path(__file__).resolve().parent
SEGKIT = [sys.executable, "-c", "from segkit.cli.main import run; run()"]
TINY = {
    "description": "intensity level (test task)",
    "citation": "segkit tests",
    "framework": "tiny_level",
    "package": "tiny_task",
    "weights_published": False,
    "weights_note": "learn a level with `segkit train -task tiny`.",
    "input": {"modality": "any", "channels": [{"name": "image"}], "orientation": "RAS", "spacing": "native"},
    "labels": [{"name": "fg", "value": 1, "suffix": "_fg"}],
    "files": [],
}
LPS = np.diag([-1.5, -1.5, 2.0, 1.0])  # stored LPS: the runner sees RAS, the output must come back


def shipped_plus_tiny(path: Path) -> Path:
    """The shipped registry with the tiny task added: as a site would add its own task."""
    import yaml

    tasks = yaml.safe_load((REPO_ROOT / "models_registry.yaml").read_text())["tasks"]
    return write_registry(path, {**tasks, "tiny": TINY})


@pytest.fixture
def tiny_env(tmp_path, segkit_home):
    registry = shipped_plus_tiny(tmp_path / "registry.yaml")
    env = {**os.environ, "SEGKIT_REGISTRY": str(registry), "SEGKIT_HOME": str(segkit_home),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return env


def _segkit(env, *args):
    return subprocess.run([*SEGKIT, *map(str, args)], env=env, capture_output=True, encoding="utf-8", timeout=120)


def _bright_cube(path: Path, offset: int) -> np.ndarray:
    rng = np.random.default_rng(offset)
    data = rng.normal(0.0, 0.1, (20, 18, 12)).astype(np.float32)
    truth = np.zeros(data.shape, bool)
    truth[4 + offset : 12 + offset, 5:13, 3:9] = True
    data[truth] += 1.0
    nib.save(nib.Nifti1Image(data, LPS), str(path))
    return truth


def test_a_task_from_a_test_registry_runs_and_trains_through_the_cli(tmp_path, tiny_env):
    truth = _bright_cube(tmp_path / "a.nii.gz", 0)
    done = _segkit(tiny_env, "segment", "-task", "tiny", "-i", tmp_path / "a.nii.gz", "--level", "0.5")
    assert done.returncode == 0, done.stderr
    written = nib.load(str(tmp_path / "a_fg.nii.gz"))
    assert np.allclose(written.affine, LPS) and np.array_equal(np.asarray(written.dataobj) > 0, truth)
    assert json.loads((tmp_path / "a_fg.json").read_text())["level"] == 0.5
    # its own option shows in its help; another task's option is refused by name
    helped = _segkit(tiny_env, "segment", "-task", "tiny", "--help")
    assert "--level" in helped.stdout and "--box" not in helped.stdout
    # train learns a level; segment --model then needs no -task (the model card names it)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for i in range(3):
        label = _bright_cube(pairs / f"c{i}.nii.gz", i)
        nib.save(nib.Nifti1Image(label.astype(np.uint8), LPS), str(pairs / f"c{i}_label.nii.gz"))
    trained = _segkit(tiny_env, "train", "-task", "tiny", "--pairs", pairs, "-o", tmp_path / "model")
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.strip() == f"model\t{tmp_path / 'model'}"
    level = json.loads((tmp_path / "model" / "model_card.json").read_text())["level"]
    assert 0.3 < level < 0.7
    again = _segkit(tiny_env, "segment", "-i", tmp_path / "a.nii.gz", "--model", tmp_path / "model", "-o", tmp_path / "m/")
    assert again.returncode == 0, again.stderr
    assert np.array_equal(np.asarray(nib.load(str(tmp_path / "m" / "a_fg.nii.gz")).dataobj) > 0, truth)


def test_an_option_of_another_task_is_exit_2_naming_task_and_option(tmp_path, tiny_env):
    _bright_cube(tmp_path / "a.nii.gz", 0)
    refused = _segkit(tiny_env, "segment", "-task", "tiny", "-i", tmp_path / "a.nii.gz", "--level", "0.5", "--propagator", "sam2")
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("segkit: error: task 'tiny' does not take --propagator "
                                      "(its own options: --level, --model)")
    assert not (tmp_path / "a_fg.nii.gz").exists()


def test_the_issue_example_medsam_with_foreign_options_is_refused(tmp_path, segkit_home):
    image = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(image))
    env = {**os.environ, "SEGKIT_HOME": str(segkit_home)}
    result = _segkit(env, "segment", "-task", "medsam", "-i", image, "--box", "1,1,1,5,5,5", "--tta", "--folds", "3",
                     "--bval", "/nonexistent", "--propagator", "nonsense")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert line.startswith("segkit: error: task 'medsam' does not take")
    for flag in ("--tta", "--folds", "--bval", "--propagator"):
        assert flag in line
    assert list(tmp_path.iterdir()) == [image]


def test_many_cases_load_the_model_once(tmp_path, monkeypatch):
    from segkit import api
    from segkit.tasks import base

    monkeypatch.setenv("SEGKIT_REGISTRY", str(write_registry(tmp_path / "r.yaml", {"tiny": TINY})))
    monkeypatch.syspath_prepend(str(TESTS))
    from tiny_task.runner import LevelRunner

    loads = []
    original = LevelRunner.load_model
    monkeypatch.setattr(LevelRunner, "load_model", lambda self: loads.append(1) or original(self))
    monkeypatch.setattr(base, "_LOADED_MODELS", {})
    truths = [_bright_cube(tmp_path / f"s{i}.nii.gz", i) for i in range(4)]
    written = api.segment("tiny", [tmp_path / f"s{i}.nii.gz" for i in range(4)], level=0.5, output=tmp_path / "out")
    assert len(loads) == 1
    assert len(written) == 8  # a mask and a sidecar per case
    for i, truth in enumerate(truths):
        assert np.array_equal(np.asarray(nib.load(str(tmp_path / "out" / f"s{i}_fg.nii.gz")).dataobj) > 0, truth)


def test_many_cases_are_not_all_held_in_memory(tmp_path, monkeypatch):
    """Past HELD_INPUT_BYTES a checked case is dropped and read again at its turn: while one case is
    inferred, the inputs of the others (done or waiting) are freed. Same masks as holding them all."""
    import gc
    import weakref

    from segkit import api
    from segkit.tasks import base

    monkeypatch.setenv("SEGKIT_REGISTRY", str(write_registry(tmp_path / "r.yaml", {"tiny": TINY})))
    monkeypatch.syspath_prepend(str(TESTS))
    from tiny_task.runner import LevelRunner

    live, reads, held_at_inference = weakref.WeakSet(), [], []
    original_prepare, original_infer = LevelRunner.prepare, LevelRunner.infer

    def prepare(self, case):
        prepared = original_prepare(self, case)
        reads.append(case.source.name)
        live.add(prepared.reference)
        return prepared

    def infer(self, model, prepared, progress):
        gc.collect()
        held_at_inference.append(sorted(image.path.name for image in live))
        return original_infer(self, model, prepared, progress)

    monkeypatch.setattr(LevelRunner, "prepare", prepare)
    monkeypatch.setattr(LevelRunner, "infer", infer)
    monkeypatch.setattr(base, "HELD_INPUT_BYTES", 0)  # only the first case stays from the check
    names = [f"s{i}.nii.gz" for i in range(4)]
    truths = [_bright_cube(tmp_path / name, i) for i, name in enumerate(names)]
    api.segment("tiny", [tmp_path / n for n in names], level=0.5, output=tmp_path / "out")
    assert reads == names + names[1:]  # all checked first; the three not held are read again
    assert held_at_inference == [[name] for name in names]
    for i, truth in enumerate(truths):
        assert np.array_equal(np.asarray(nib.load(str(tmp_path / "out" / f"s{i}_fg.nii.gz")).dataobj) > 0, truth)


def test_outputs_are_planned_and_checked_before_any_compute(tmp_path, monkeypatch):
    from segkit import api
    from segkit.errors import SegkitError

    monkeypatch.setenv("SEGKIT_REGISTRY", str(write_registry(tmp_path / "r.yaml", {"tiny": TINY})))
    monkeypatch.syspath_prepend(str(TESTS))
    _bright_cube(tmp_path / "a.nii.gz", 0)
    before = (tmp_path / "a.nii.gz").read_bytes()
    with pytest.raises(SegkitError, match="overwrite an input"):
        api.segment("tiny", [tmp_path / "a.nii.gz"], level=0.5, output=tmp_path / "a.nii.gz")
    assert (tmp_path / "a.nii.gz").read_bytes() == before
    with pytest.raises(SegkitError, match="same path"):
        api.segment("tiny", [tmp_path / "a.nii.gz", tmp_path / "a.nii.gz"], level=0.5)
    with pytest.raises(SegkitError, match="does not take --level2"):
        api.segment("tiny", [tmp_path / "a.nii.gz"], level2=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "r.yaml"]


def test_registry_artifacts_are_planned_with_the_masks(tmp_path):
    from segkit import api

    dwi = tmp_path / "sub_dwi.nii.gz"
    runner = api.make_runner("cc_fodf", inputs=[dwi], save_peaks=True, output=tmp_path / "out" / "cc.nii.gz",
                             bval=tmp_path / "b.bval", bvec=tmp_path / "b.bvec")
    plan = api.plan_outputs(runner, runner.cases([dwi])[0], 1)
    assert plan.masks == {"cc": tmp_path / "out" / "cc.nii.gz"}
    assert plan.artifacts == {"peaks": tmp_path / "out" / "sub_dwi_peaks.nii.gz"}
    # and an artifact that would land on an input is refused before anything runs
    clash = api.make_runner("cc_fodf", inputs=[dwi], save_peaks=True, bval=tmp_path / "b.bval",
                            bvec=tmp_path / "b.bvec", mask=tmp_path / "sub_dwi_peaks.nii.gz")
    from segkit.errors import SegkitError

    with pytest.raises(SegkitError, match="overwrite an input"):
        plan = api.plan_outputs(clash, clash.cases([dwi])[0], 1)
        api.check_outputs_spare_inputs(plan.paths(), api.files_read_by(clash))


def test_every_flag_means_one_thing_across_tasks():
    from dataclasses import dataclass

    from segkit.cli.task_commands import task_option_table
    from segkit.tasks.options import TaskOptions, check_consistent, option

    for kind in ("segment", "train"):
        flags, owners, classes = task_option_table(kind, None)
        assert flags and classes  # the shipped registry's tasks declare options
    assert {"medsam", "cc_fodf", "lpm_nnsam2", "seg_sc_lesion_t2w_sci"} <= set(task_option_table("segment", None)[2])

    @dataclass(frozen=True)
    class A(TaskOptions):
        model: str | None = option(None, "--model", kind=str, help="one thing")

    @dataclass(frozen=True)
    class B(TaskOptions):
        model: str | None = option(None, "--model", kind=str, help="another thing")

    with pytest.raises(RuntimeError, match="means different things"):
        check_consistent([("a", A), ("b", B)])


def test_segment_help_groups_options_by_task():
    env = {**os.environ}
    env.pop("SEGKIT_REGISTRY", None)
    helped = subprocess.run([*SEGKIT, "segment", "--help"], env=env, capture_output=True, encoding="utf-8",
                            timeout=60, cwd=REPO_ROOT)
    assert helped.returncode == 0
    for panel in ("Options of medsam", "Options of cc_fodf", "Options of lpm_nnsam2"):
        assert panel in helped.stdout


def test_post_processing_applies_to_every_task(tmp_path, monkeypatch):
    """--largest/--remove-small were nnU-Net's only; the base runner now cleans any task's labels."""
    from segkit import api

    monkeypatch.setenv("SEGKIT_REGISTRY", str(write_registry(tmp_path / "r.yaml", {"tiny": TINY})))
    monkeypatch.syspath_prepend(str(TESTS))
    data = np.zeros((20, 18, 12), np.float32)
    data[2:10, 2:10, 2:8] = 1.0  # 384 voxels
    data[14:17, 12:15, 8:11] = 1.0  # 27 voxels, apart
    nib.save(nib.Nifti1Image(data, LPS), str(tmp_path / "two.nii.gz"))
    api.segment("tiny", [tmp_path / "two.nii.gz"], level=0.5, output=tmp_path / "plain/")
    api.segment("tiny", [tmp_path / "two.nii.gz"], level=0.5, largest=True, output=tmp_path / "largest/")
    api.segment("tiny", [tmp_path / "two.nii.gz"], level=0.5, remove_small="30vox", output=tmp_path / "small/")
    counts = {name: int(np.asarray(nib.load(str(tmp_path / name / "two_fg.nii.gz")).dataobj).sum())
              for name in ("plain", "largest", "small")}
    assert counts == {"plain": 384 + 27, "largest": 384, "small": 384}
