"""Task facts that code needs (orientation, label values), read from the registry: the one place they
are written. Cached per registry file version, so reading them in a loop costs nothing."""

from __future__ import annotations

import os
from functools import lru_cache


def task_spec(name: str):
    from segkit.registry.schema import default_registry_path

    path = default_registry_path()
    try:
        version = os.stat(path).st_mtime_ns
    except OSError:
        version = None
    return _spec(str(path), version, name)


@lru_cache(maxsize=16)
def _spec(path: str, _version, name: str):
    from segkit.registry.schema import load_registry

    return load_registry(path).get(name)


def orientation(name: str) -> str:
    """The axis codes the task's model sees (registry `input.orientation`)."""
    return task_spec(name).input.orientation


def label_values(name: str) -> tuple[int, ...]:
    """Each output label's value, in registry order (lpm_nnsam2: 1 right, 2 left)."""
    return tuple(label.values[0] for label in task_spec(name).labels)
