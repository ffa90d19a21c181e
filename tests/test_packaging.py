"""The project builds into a wheel that carries the registry and the `segkit` entry point."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO_ROOT


def test_wheel_contains_registry_and_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(REPO_ROOT)],
        capture_output=True, encoding="utf-8", timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("segkit-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        packaged = zf.read("segkit/models_registry.yaml")
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert packaged == (REPO_ROOT / "models_registry.yaml").read_bytes()
    assert "segkit = segkit.cli.main:main" in entry_points
    assert {"segkit/cli/main.py", "segkit/registry/store.py", "segkit/api.py"} <= names


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    command = "python3 -m venv .venv && .venv/bin/pip install '.[test]' && .venv/bin/pytest -q"
    assert command in readme and command in ci
