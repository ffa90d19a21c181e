"""Where the model store keeps things, and the settings that move them (no I/O beyond reading them).

Under the cache home (SEGKIT_HOME, else the platform cache dir):

    tasks/<task>/manifest.json      present only for a complete, verified install
    tasks/<task>/<file>             the verified file (or <file stem>/ when unpacked)
    pins/<task>.json                sha256 pinned at first install for upstreams without checksums
    locks/<task>.lock               one installer at a time per task
    staging/<task>-<pid>-<rand>/    an install in progress; renamed onto tasks/<task> at the end
    local_tasks.yaml                tasks added with `install-task NAME --custom-url URL`
"""

from __future__ import annotations

import os
from pathlib import Path

MANIFEST = "manifest.json"
LOCAL_TASKS_FILE = "local_tasks.yaml"


def cache_home() -> Path:
    """SEGKIT_HOME, else the platform's user cache directory for segkit."""
    override = os.environ.get("SEGKIT_HOME")
    if override:
        return Path(override).expanduser()
    import platformdirs  # a dependency of pooch; imported lazily to keep --help fast

    return Path(platformdirs.user_cache_dir("segkit"))


def mirror_base() -> str | None:
    """SEGKIT_MIRROR: a folder or URL holding the model files by name, tried before upstream."""
    value = os.environ.get("SEGKIT_MIRROR", "").strip()
    if not value:
        return None
    if "://" not in value:
        value = Path(value).expanduser().resolve().as_uri()
    return value.rstrip("/")


def task_dir(task: str) -> Path:
    return cache_home() / "tasks" / task


def pins_path(task: str) -> Path:
    return cache_home() / "pins" / f"{task}.json"


def lock_path(task: str) -> Path:
    return cache_home() / "locks" / f"{task}.lock"


def staging_root() -> Path:
    return cache_home() / "staging"


def local_tasks_path() -> Path:
    return cache_home() / LOCAL_TASKS_FILE
