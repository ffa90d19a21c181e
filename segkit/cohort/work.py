"""One case on a worker: file paths in, outputs written atomically, a small record back.

The runner is rebuilt from the job's plain settings (task name, options), the model comes from the
worker's cache (segkit.cohort.plugin), and the case is skipped when its outputs and sidecars already
carry the same fingerprint (segkit.cohort.resume). Nothing large crosses the network either way.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

QC_OVERLAYS = "overlays"


def case_runner(job: dict):
    """The task runner for this case: the command's settings, the case's output folder and options."""
    from segkit import api

    case = job["case"]
    qc_dir = job.get("qc_dir")
    options = {**job["options"], **case.options}
    return api.make_runner(job["task"], inputs=list(case.inputs), output=f"{case.output}{os.sep}",
                           qc=None if qc_dir is None else Path(qc_dir) / QC_OVERLAYS, **job["settings"], **options)


def plan_case(job: dict):
    """(runner, the task's case, its OutputPlan): what the driver checks and the worker writes."""
    from segkit.api import plan_outputs

    runner = case_runner(job)
    cases = runner.cases([Path(p) for p in job["case"].inputs])
    if len(cases) != 1:
        from segkit.cohort.inputs import CohortError

        raise CohortError(f"case '{job['case'].id}': {len(cases)} images for one case; give one case's channels per row")
    return runner, cases[0], plan_outputs(runner, cases[0], 1)


def run_case(job: dict) -> dict:
    """Segment one case unless it is already complete; returns {id, status, seconds, worker, outputs}."""
    runner, plan, ready = _prepare(job)
    return ready["record"] if "record" in ready else _infer(job, ready, runner, plan)


def prepare_case(job: dict) -> dict:
    """The CPU half of a case: the resume check, then the task's `prepare` (reading and checking the
    inputs, reorientation). Returns what `infer_case` needs (the runner, its plan, the prepared
    arrays), or a skipped case's record; with --gpu-workers it runs as its own task on a CPU worker
    and what it returns travels to a GPU worker."""
    runner, plan, ready = _prepare(job)
    return ready if "record" in ready else {**ready, "runner": runner, "plan": plan}


def infer_case(job: dict, ready: dict) -> dict:
    """The model half of a case: inference with this worker's cached model, then every output written,
    by the runner that prepared it (a runner may keep state from `prepare`, e.g. a few-shot support)."""
    if "record" in ready:
        return ready["record"]
    return _infer(job, ready, ready["runner"], ready["plan"])


def _prepare(job: dict):
    from segkit.cohort.resume import fingerprint, is_complete

    started = time.perf_counter()
    case = job["case"]
    runner, task_case, plan = plan_case(job)
    expected = fingerprint(runner, case.inputs)
    qc_dir = job.get("qc_dir")
    if not job.get("force") and is_complete(plan, expected) and (qc_dir is None or _qc_record(qc_dir, case.id).is_file()):
        return runner, plan, {"record": record(case.id, "skipped", started)}
    prepared = runner.prepare(task_case)
    return runner, plan, {"prepared": prepared, "fingerprint": expected, "seconds": time.perf_counter() - started}


def _infer(job: dict, ready: dict, runner, plan) -> dict:
    from segkit.api import write_prediction
    from segkit.cohort.plugin import current_cache
    from segkit.cohort.resume import FINGERPRINT_KEY

    started = time.perf_counter() - ready["seconds"]
    case, prepared = job["case"], ready["prepared"]
    model = current_cache().model(runner)
    prediction = runner.finish(prepared, runner.infer(model, prepared, None))
    prediction.info[FINGERPRINT_KEY] = ready["fingerprint"]
    written = write_prediction(prediction, plan, runner, time.perf_counter() - started, job.get("command_line", ""))
    qc_dir = job.get("qc_dir")
    if qc_dir is not None:
        from segkit.qc.report import write_case_record

        write_case_record(Path(qc_dir), case.id, prediction, plan, runner.spec.name)
    return record(case.id, "done", started, outputs=len(written))


def _qc_record(qc_dir, case_id: str) -> Path:
    from segkit.qc.report import case_record_path

    return case_record_path(Path(qc_dir), case_id)


def record(case_id: str, status: str, started: float, error: str = "", outputs: int = 0, attempts: int = 1) -> dict:
    return {"id": case_id, "status": status, "seconds": round(time.perf_counter() - started, 3),
            "worker": worker_name(), "attempts": attempts, "outputs": outputs, "error": error}


def worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"
