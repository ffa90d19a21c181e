"""Every bad-input case of tests/bad_inputs.py: exit 2, one line, nothing written, no model loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from bad_inputs import CASES, base_files, run_case

REPO = Path(__file__).resolve().parents[1]


def _files(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and ".home" not in p.parts}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGKIT_HOME", str(tmp_path / ".home"))
    monkeypatch.setenv("SEGKIT_RETRIES", "0")
    monkeypatch.delenv("SEGKIT_MIRROR", raising=False)
    monkeypatch.delenv("SEGKIT_REGISTRY", raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    base_files(tmp_path)
    case.make(tmp_path)
    before = _files(tmp_path)
    code, stderr = run_case(case, tmp_path)
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("segkit: error: ") and case.expect in lines[0], stderr
    assert _files(tmp_path) == before  # nothing written or touched beside the inputs
    assert not (tmp_path / ".home" / "tasks").exists()  # no model was installed or loaded


def test_the_docs_table_lists_every_case():
    table = (REPO / "docs" / "bad_inputs.md").read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2:3].isdigit()]
    assert len(CASES) >= 40 and len(rows) == len(CASES)
    for case, row in zip(CASES, rows):
        assert f"| {case.name} |" in row and "| 2 |" in row


@pytest.mark.parametrize("name", ["zero voxel size (pixdim, no sform)", "negative voxel size (pixdim, no sform)",
                                  "header declares 400^3 voxels in a 1 kB .nii"])
def test_library_warnings_stay_off_stderr_in_a_real_process(name, tmp_path, segkit_home):
    """nibabel logs its header fixes to stderr; the segkit process shows them only with --debug."""
    import subprocess
    import sys

    case = next(c for c in CASES if c.name == name)
    base_files(tmp_path)
    case.make(tmp_path)
    exe = str(Path(sys.executable).with_name("segkit"))
    quiet = subprocess.run([exe, *case.argv], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 2 and len(quiet.stderr.strip().splitlines()) == 1, quiet.stderr
    loud = subprocess.run([exe, "--debug", *case.argv], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert loud.returncode == 2 and len(loud.stderr.strip().splitlines()) > 1
