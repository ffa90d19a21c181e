"""The CLI through typer's CliRunner and through a real `segkit` subprocess."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import REPO_ROOT
from segkit import __version__
from segkit.cli.main import register_commands, run
from weights_server import WeightsServer

runner = CliRunner()
SEGKIT = shutil.which("segkit") or str(Path(sys.executable).with_name("segkit"))


def _segkit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([SEGKIT, *args], capture_output=True, encoding="utf-8", env={**os.environ, **(env or {})}, timeout=300)


def test_version_and_help():
    result = runner.invoke(register_commands(["--version"]), ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"segkit {__version__}"
    result = runner.invoke(register_commands(["--help"]), ["--help"])
    assert result.exit_code == 0
    for command in ("list-tasks", "install-task", "segment"):
        assert command in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["list-tasks"], ["list-tasks", "--plain"]])
def test_fast_paths_do_not_import_torch(args, segkit_home):
    code = (
        "import sys\nfrom segkit.cli.main import run\n"
        f"try:\n    run({args!r})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'dipy', 'SimpleITK') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args", [["eval", "--help"], ["--debug", "quantify", "--help"]])
def test_eval_and_quantify_build_only_their_own_command(args, segkit_home):
    """`segkit eval` in a shell loop starts without the task registry, yaml or any task's options:
    only the command named on the command line is imported (segkit.cli.main.COMMAND_MODULES)."""
    code = (
        "import sys\nfrom segkit.cli.main import run\n"
        f"try:\n    run({args!r})\nexcept SystemExit:\n    pass\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'yaml' or m.startswith(('segkit.registry', "
        "'segkit.tasks', 'segkit.cli.segment', 'segkit.cli.train', 'segkit.cli.task_commands')))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Usage: segkit" in result.stdout


@pytest.mark.parametrize("command", ["eval", "list-tasks"])
def test_script_freezes_the_heap_at_exit_after_eval_only(command, tmp_path, segkit_home):
    """The installed script (segkit.cli.main:main) leaves the imports' objects out of the shutdown's
    garbage collection after eval and quantify (gc.freeze), and after no other command."""
    import nibabel as nib
    import numpy as np

    mask = np.zeros((6, 6, 6), dtype=np.uint8)
    mask[1:4, 2:5, 1:5] = 1
    for name, data in (("ref", mask), ("pred", np.roll(mask, 1, axis=0))):
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / f"{name}.nii.gz"))
    args = ["eval", "--ref", str(tmp_path / "ref.nii.gz"), "--pred", str(tmp_path / "pred.nii.gz")] if command == "eval" else [command]
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: sys.stderr.write(f'frozen {gc.get_freeze_count()}\\n'))\n"
        "from segkit.cli.main import main\n"
        f"sys.argv = ['segkit', *{args!r}]\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr
    frozen = int(result.stderr.split("frozen ")[-1])
    assert (frozen > 1000) if command == "eval" else (frozen == 0), frozen
    if command == "eval":
        assert "dice" in result.stdout.lower()


def test_list_tasks_shows_every_task_and_its_status(segkit_home):
    result = _segkit("list-tasks", "--plain")
    assert result.returncode == 0, result.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in result.stdout.strip().splitlines()}
    assert set(rows) == {"seg_sc_lesion_t2w_sci", "cc_fodf", "ais_ncct", "brats_autosam2", "lpm_nnsam2", "medsam"}
    assert rows["medsam"][1] == "bundled (offline)"
    assert rows["seg_sc_lesion_t2w_sci"][1] == "not installed"
    assert rows["cc_fodf"][1].startswith("no published weights")
    assert "T2w" in rows["seg_sc_lesion_t2w_sci"][3] and "LAS" in rows["seg_sc_lesion_t2w_sci"][3]
    pretty = _segkit("list-tasks")
    assert pretty.returncode == 0 and "cc_fodf" in pretty.stdout


@pytest.mark.parametrize("flag", ["-task", "--task", "-t"])
def test_segment_parses_sct_style_task_flag(flag, segkit_home):
    # the input is checked before the model is looked for: a missing file is named first
    result = _segkit("segment", "-i", "sub-001_T2w.nii.gz", flag, "cc_fodf")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "sub-001_T2w.nii.gz" in lines[0] and "not found" in lines[0]
    assert "Traceback" not in result.stderr


def test_install_task_sciseg_parses_and_installs_from_loopback(tmp_path, segkit_home):
    archive = tmp_path / "model_SCIsegV2_r20240729.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Dataset501_SCI/nnUNetTrainer__nnUNetPlans__3d_fullres/dataset.json", "{}")
    data = archive.read_bytes()
    registry = yaml.safe_load((REPO_ROOT / "models_registry.yaml").read_text())
    with WeightsServer() as server:
        url = server.add("/model_SCIsegV2_r20240729.zip", data)
        registry["tasks"]["seg_sc_lesion_t2w_sci"]["files"][0]["mirrors"] = [url]
        reg_path = tmp_path / "registry.yaml"
        reg_path.write_text(yaml.safe_dump(registry))
        env = {"SEGKIT_REGISTRY": str(reg_path)}
        result = _segkit("install-task", "seg_sc_lesion_t2w_sci", env=env)
        assert result.returncode == 0, result.stderr
        assert hashlib.sha256(data).hexdigest() in result.stdout
        listed = _segkit("list-tasks", "--plain", env=env)
        assert "seg_sc_lesion_t2w_sci\tinstalled" in listed.stdout
        again = _segkit("install-task", "seg_sc_lesion_t2w_sci", env=env)  # already there: no download
        assert again.returncode == 0 and server.hits("/model_SCIsegV2_r20240729.zip") == 1


@pytest.mark.parametrize(
    "args, needle",
    [
        (["install-task", "nope"], "unknown task 'nope'"),
        (["segment", "-i", "x.nii.gz"], "Missing option"),
        (["segment", "-i", "x.nii.gz", "-task", "medsam", "--bogus"], "No such option"),
        (["install-task", "medsam", "--custom-url", "file:///x", "--sha256", "zz"], "--sha256 must be 64"),
        (["install-task", "cc_fodf"], "nothing to download"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle, segkit_home):
    result = _segkit(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segkit: error:") and needle in lines[0]


def test_internal_error_exits_1_and_debug_shows_traceback(monkeypatch, capsys, segkit_home):
    import segkit.registry.schema as schema

    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(schema, "load_registry", broken)
    with pytest.raises(SystemExit) as info:
        run(["list-tasks"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "simulated bug" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        run(["--debug", "list-tasks"])
    assert "Traceback" in capsys.readouterr().err


def test_script_runs_nibabels_unused_url_support_only_when_used(tmp_path, segkit_home):
    """nibabel imports urllib.request (with http, ssl and email: 15-20 ms of a process) to read URLs,
    which eval and quantify never ask for: the installed script registers it to run at its first use
    (segkit.runtime.lazy_imports), and a later use still gets the whole module."""
    import nibabel as nib
    import numpy as np

    mask = np.zeros((6, 6, 6), dtype=np.uint8)
    mask[1:4, 2:5, 1:5] = 1
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(tmp_path / "mask.nii.gz"))
    code = (
        "import sys\n"
        "from segkit.cli.main import main\n"
        f"sys.argv = ['segkit', 'quantify', '-m', {str(tmp_path / 'mask.nii.gz')!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "assert 'nibabel' in sys.modules and 'http.client' not in sys.modules, 'urllib.request ran'\n"
        "from urllib.request import urlopen, Request\n"
        "assert callable(urlopen) and 'http.client' in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
