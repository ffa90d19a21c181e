"""Resume: a case is skipped only when every planned output exists and each mask's sidecar records
the same fingerprint: segkit version, model identity (its sha256 key), the sha256 of every file the
case reads, and the options in force. Anything else (a missing file, a changed option, another
model, an edited input, a half-finished case) runs again."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

FINGERPRINT_KEY = "cohort_fingerprint"
_COMMON_OPTIONS = ("largest", "fill_holes", "remove_small", "series")


def fingerprint(runner, inputs) -> dict:
    from segkit import __version__
    from segkit.registry.fetch import sha256_cached

    files = [Path(p) for p in inputs] + [Path(p) for p in runner.options.files_read()]
    return {
        "segkit_version": __version__,
        "task": runner.spec.name,
        "model": [_plain(part) for part in runner.model_key()],
        "inputs_sha256": {str(p): sha256_cached(p) for p in files if p.is_file()},
        "options": options_of(runner),
    }


def options_of(runner) -> dict:
    """Every option in force: the task's own and the common post-processing ones (not -o, --qc)."""
    own = {k: _plain(v) for k, v in dataclasses.asdict(runner.options).items()}
    common = {k: _plain(getattr(runner.common, k, None)) for k in _COMMON_OPTIONS}
    return {**own, **common}


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def is_complete(plan, expected: dict) -> bool:
    """Every output of `plan` on disk and each sidecar carrying `expected` (compared as JSON)."""
    from segkit.api import sidecar_path

    if not all(Path(p).is_file() for p in plan.paths()):
        return False
    wanted = json.loads(json.dumps(expected))
    for mask in plan.masks.values():
        try:
            recorded = json.loads(sidecar_path(mask).read_text(encoding="utf-8")).get(FINGERPRINT_KEY)
        except (OSError, ValueError, AttributeError):
            return False
        if recorded != wanted:
            return False
    return True
