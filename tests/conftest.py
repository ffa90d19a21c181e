"""Shared fixtures: an isolated segkit cache, and registries written on the fly."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]

# cpu_budget: CPU seconds per test, a budget from pyproject.toml ([tool.pytest.ini_options] cpu_budget_s);
# pytester: tests/test_cpu_budget.py runs the budget on tiny busy loops
pytest_plugins = ("cpu_budget", "pytester")

# pyproject.toml runs the suite on pytest-xdist workers, one test file per worker at a time (--dist loadfile,
# so a module's trained model is built once). Each worker then gets one thread per library, and waiting
# threads sleep instead of spinning: two workers on two cores otherwise oversubscribe them, and spinning
# OpenMP threads slow torch and ONNX Runtime down several times. Children (segkit subprocesses) inherit it;
# tests that pin their children's threads (the golden cases) keep their own values.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ.setdefault(_variable, "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The test files that take longest (CPU seconds, measured on the 2-core dev machine) are handed to the
# workers first, so the last file to start is a short one and both workers finish together.
LONGEST_FILES_FIRST = (
    "test_lpm_train.py", "test_golden_outputs.py", "test_examples.py", "test_cc_proof.py",
    "test_brats_autosam2_proof.py", "test_nnunet_end_to_end.py", "test_kill9.py", "test_fuzz_inputs.py",
    "test_lpm_fewshot.py", "test_medsam_window.py", "test_lpm_align.py", "test_medsam_reference.py",
    "test_medsam_synthetic.py", "test_cc_end_to_end.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the order inside a file is kept


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
