"""The user's local task file (SEGKIT_HOME/local_tasks.yaml): raw registry entries, read and added.

Raw on purpose: the schema parses these entries when it loads the registry, so this module must
not import the schema (that would make the two import each other).
"""

from __future__ import annotations

from pathlib import Path

from segkit.errors import RegistryError
from segkit.registry.paths import local_tasks_path


def parse_yaml(text: str):
    """yaml.safe_load, with libyaml's C parser where pyyaml was built with it: about 10x faster, and
    the registry is parsed for every command and every case of a cohort (17 ms -> 2 ms here)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_local_tasks(path: Path | None = None) -> dict:
    """Task name -> raw entry; {} when the file does not exist."""
    import yaml

    path = path or local_tasks_path()
    if not path.is_file():
        return {}
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"local task registry {path} is not readable YAML ({exc}); fix or delete it") from None
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, dict):
        raise RegistryError(f"local task registry {path}: needs a 'tasks' mapping; fix or delete it")
    return tasks


def write_local_entry(name: str, entry: dict) -> None:
    """Add or replace one task, under a lock so that concurrent installs keep each other's entries."""
    import yaml
    from filelock import FileLock

    from segkit.io.writer import atomic_write_text

    path = local_tasks_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        tasks = read_local_tasks(path)
        tasks[name] = entry
        atomic_write_text(path, yaml.safe_dump({"schema_version": 1, "tasks": tasks}, sort_keys=False))
