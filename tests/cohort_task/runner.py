from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np

from segkit.tasks.base import Inferred, TaskRunner


class LevelRunner(TaskRunner):
    def model_key(self) -> tuple:
        return ("level", self.options.level)

    def load_model(self) -> float:
        log = os.environ.get("COHORT_TASK_LOADS")
        if log:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{os.getpid()}\n")
        return float(self.options.level)

    def prepare(self, case):
        self._prepared = True  # state kept on the runner between prepare and infer, as lpm_nnsam2's support
        return super().prepare(case)

    def infer(self, level, prepared, progress) -> Inferred:
        if not getattr(self, "_prepared", False):
            raise RuntimeError("cohort_task: infer on a runner that prepared nothing")
        name = Path(prepared.case.source).name
        time.sleep(float(os.environ.get("COHORT_TASK_SLEEP", "0")))
        if "crash" in name:
            raise RuntimeError(f"cohort_task crashes on {name}")
        if "kill" in name:
            os.kill(os.getpid(), signal.SIGKILL)
        if "flaky" in name:
            marker = Path(os.environ["COHORT_TASK_MARKS"]) / name
            if not marker.exists():
                marker.write_text("first attempt failed\n")
                raise RuntimeError(f"cohort_task: first attempt at {name} fails")
        return Inferred((prepared.arrays[0] > level).astype(np.uint8), {"level": level})
