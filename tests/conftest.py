"""Shared fixtures: an isolated segkit cache, and registries written on the fly."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]

# cpu_budget: CPU seconds per test, a budget from pyproject.toml ([tool.pytest.ini_options] cpu_budget_s);
# pytester: tests/test_cpu_budget.py runs the budget on tiny busy loops
pytest_plugins = ("cpu_budget", "pytester")


def task_entry(name: str, files: list[dict], **overrides) -> dict:
    """A minimal valid registry task entry whose files come from the given file dicts."""
    entry = {
        "description": f"test task {name}",
        "citation": "segkit tests",
        "framework": "nnunetv2",
        "weights_published": True,
        "input": {"modality": "MRI", "channels": [{"name": "T2w"}], "orientation": "RAS", "spacing": "native"},
        "labels": [{"name": "seg", "value": 1, "suffix": "_seg"}],
        "files": files,
    }
    entry.update(overrides)
    return entry


def file_entry(name: str, url: str, sha256: str | None, size: int | None = None, **overrides) -> dict:
    entry = {"name": name, "version": "1", "sha256": sha256, "size": size, "unpack": False, "mirrors": [url]}
    if sha256 is None:
        entry["checksum_published"] = False
    entry.update(overrides)
    return entry


def write_registry(path: Path, tasks: dict) -> Path:
    path.write_text(yaml.safe_dump({"schema_version": 1, "tasks": copy.deepcopy(tasks)}, sort_keys=False))
    return path


@pytest.fixture
def segkit_home(tmp_path, monkeypatch) -> Path:
    """An empty cache home for this test only (SEGKIT_HOME), with no mirror set."""
    home = tmp_path / "segkit_home"
    monkeypatch.setenv("SEGKIT_HOME", str(home))
    monkeypatch.delenv("SEGKIT_MIRROR", raising=False)
    monkeypatch.delenv("SEGKIT_REGISTRY", raising=False)
    monkeypatch.setenv("SEGKIT_RETRIES", "1")
    return home


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    """One LiteMedSAM ONNX export per test session, shared by the medsam test modules."""
    folder = tmp_path_factory.getbasetemp() / "medsam_onnx_cache"
    folder.mkdir(exist_ok=True)
    return folder
