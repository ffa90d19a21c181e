"""`segkit` as a child process for the lpm_nnsam2 tests: the installed command, its own SEGKIT_HOME,
the shipped registry (a SEGKIT_REGISTRY left by another test is dropped), UTF-8 output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_segkit(*args: str, home: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("segkit")
    env = {**os.environ, "SEGKIT_HOME": str(home)}
    env.pop("SEGKIT_REGISTRY", None)
    return subprocess.run([str(exe), *args], env=env, capture_output=True, encoding="utf-8", timeout=timeout)
