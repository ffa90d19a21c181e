"""The cohort driver: check every case and plan every output before any compute, install the model
files once, then submit one Dask task per case (file paths in, a small record back), retry failed
or killed cases, and end with a run table, a QC report and the list of failures.

With --gpu-workers a case is two tasks, its preparation on a CPU worker (resource CPU=1) feeding its
inference on a worker with one GPU (resource GPU=1); the prepared arrays go from one to the other.

`--shard i/N` runs the i-th of N slices of the sorted cases in this process, without Dask, for plain
job arrays; resume and the run table work the same way.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from segkit.cohort.clusters import ClusterSettings, check_resources, dashboard_link, open_cluster
from segkit.errors import SegkitError

RUN_TABLE = "segkit_runs.tsv"
RUN_COLUMNS = ["id", "status", "seconds", "worker", "attempts", "error"]


def masks_manifest(run_table: Path) -> Path:
    """Beside the run table: every finished mask, as `quantify --manifest` reads it (segkit_masks.csv)."""
    path = Path(run_table).with_name(Path(run_table).stem.replace("segkit_runs", "segkit_masks") + ".csv")
    return path if path != Path(run_table) else path.with_name(path.stem + "_masks.csv")


@dataclass
class CohortRun:
    task: str | None
    cases: list  # CohortCase
    options: dict = field(default_factory=dict)  # the task's own options, for every case
    settings: dict = field(default_factory=dict)  # device, largest, fill_holes, remove_small, series
    qc_dir: Path | None = None
    force: bool = False
    retries: int = 1
    shard: str | None = None
    run_table: Path | None = None
    command_line: str = ""

    def jobs(self) -> list[dict]:
        return [{"task": self.task, "case": case, "options": self.options, "settings": self.settings,
                 "qc_dir": None if self.qc_dir is None else str(self.qc_dir), "force": self.force,
                 "command_line": self.command_line} for case in self.cases]


def parse_shard(text: str | None, n_cases: int) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise SegkitError(f"--shard {text!r}: give i/N with 0 <= i < N, e.g. 0/4 (e.g. $SLURM_ARRAY_TASK_ID/4)") from None
    if not 0 <= index < count:
        raise SegkitError(f"--shard {text!r}: i must be in 0..N-1")
    return index, count


def plan_and_check(run: CohortRun, extra_outputs: list[Path]) -> list[dict]:
    """Every case's runner built (its options checked) and outputs planned; no output may be a file
    any case reads, and every output folder must be writable. Raises before anything is computed."""
    from segkit.api import check_outputs, files_read_by
    from segkit.cohort.work import plan_case

    jobs = run.jobs()
    outputs, read, patterns = list(extra_outputs), [], []
    for job in jobs:
        runner, _, plan = plan_case(job)
        outputs += plan.paths()
        patterns += plan.qc_patterns()
        read += [*files_read_by(runner), *map(Path, job["case"].inputs)]
    check_outputs(outputs, read, patterns)
    return jobs


def prefetch_model(job: dict) -> None:
    """Install the task's model files once, here, before any worker needs them."""
    from segkit.cohort.work import case_runner
    from segkit.registry.store import ensure_offline_task, installed_task, install_task

    spec = case_runner(job).spec
    if not spec.files:
        return
    offline = all(m.startswith(("package://", "file://")) for f in spec.files for m in f.mirrors)
    if offline:
        ensure_offline_task(spec)
    elif spec.weights_published and installed_task(spec.name) is None:
        install_task(spec)


def execute(run: CohortRun, cluster: ClusterSettings, progress=None, say=None) -> list[dict]:
    """Run every case; returns one record per case, in the cases' order."""
    say = say or (lambda text: sys.stderr.write(text + "\n"))
    extra = [] if run.run_table is None else [Path(run.run_table), masks_manifest(run.run_table)]
    extra += [] if run.qc_dir is None else [Path(run.qc_dir) / "index.html"]
    jobs = plan_and_check(run, extra)
    shard = parse_shard(run.shard, len(jobs))
    if shard is not None:
        ordered = sorted(jobs, key=lambda job: job["case"].id)
        jobs = ordered[shard[0]::shard[1]]
    if not jobs:
        return []
    prefetch_model(jobs[0])
    if progress is not None and hasattr(progress, "start"):
        progress.start(len(jobs))
    if shard is not None:
        records = _run_here(jobs, run.retries, progress)
    else:
        records = _run_on_dask(jobs, run.retries, cluster, progress, say)
    _finish(run, jobs, records)
    return records


def _run_here(jobs: list[dict], retries: int, progress) -> list[dict]:
    from segkit.cohort.work import record, run_case

    records = []
    for job in jobs:
        started = time.perf_counter()
        for attempt in range(1, retries + 2):
            try:
                records.append({**run_case(job), "attempts": attempt})
                break
            except Exception as exc:  # noqa: BLE001 - a case's failure is recorded, the cohort goes on
                if isinstance(exc, SegkitError) or attempt > retries:
                    records.append(record(job["case"].id, "failed", started, _one_line(exc), attempts=attempt))
                    break
        if progress:
            progress(records[-1])
    return records


def _run_on_dask(jobs: list[dict], retries: int, cluster: ClusterSettings, progress, say) -> list[dict]:
    from distributed import as_completed

    from segkit.cohort.plugin import ModelCache

    client, owned = open_cluster(cluster)
    try:
        check_resources(client, cluster)
        link = dashboard_link(client)
        if link:
            say(f"segkit: Dask dashboard: {link}")
        client.register_plugin(ModelCache())
        pending, started = {}, {}

        def submit(job: dict, attempt: int):
            started.setdefault(job["case"].id, time.perf_counter())
            future = submit_case(client, job, attempt, cluster)
            pending[future] = (job, attempt)
            return future

        queue = as_completed([submit(job, 1) for job in jobs])
        records = {}
        for future in queue:
            job, attempt = pending.pop(future)
            result = _collect(future, job, attempt, retries, started)
            if result is None:
                queue.add(submit(job, attempt + 1))
                continue
            records[job["case"].id] = result
            if progress:
                progress(result)
        return [records[job["case"].id] for job in jobs]
    finally:
        client.close()
        if owned is not None:
            owned.close()


def submit_case(client, job: dict, attempt: int, cluster: ClusterSettings):
    """The future of a case's record: one task (asking a GPU with --gpus 1), or, with --gpu-workers,
    its preparation on a CPU worker (CPU=1) feeding its inference on a GPU worker (GPU=1)."""
    from segkit.cohort.work import infer_case, prepare_case, run_case

    tag = f"{job['case'].id}-{attempt}-{time.time_ns()}"
    if not cluster.split:
        return client.submit(run_case, job, key=f"segkit-case-{tag}", pure=False, resources=cluster.resources)
    ready = client.submit(prepare_case, job, key=f"segkit-prepare-{tag}", pure=False,
                          resources=cluster.prepare_resources)
    return client.submit(infer_case, job, ready, key=f"segkit-infer-{tag}", pure=False, resources=cluster.resources)


def _collect(future, job: dict, attempt: int, retries: int, started: dict) -> dict | None:
    """The case's record, or None when it failed and has a retry left (a bad-input error has none)."""
    from segkit.cohort.work import record

    if future.status == "finished":
        return {**future.result(), "attempts": attempt}
    try:
        exc = future.exception()
    except BaseException as cancelled:  # noqa: BLE001 - a cancelled future (scheduler gone) is a failure too
        exc = cancelled
    if attempt <= retries and not isinstance(exc, SegkitError):
        return None
    failed = record(job["case"].id, "failed", started[job["case"].id], _one_line(exc), attempts=attempt)
    failed["worker"] = _last_worker(exc) or ""
    return failed


def _last_worker(exc) -> str | None:
    worker = getattr(exc, "last_worker", None)
    return getattr(worker, "address", None) if worker is not None else None


def _one_line(exc: BaseException) -> str:
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return "its worker died while running it (killed, or out of memory)"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, SegkitError):
        text = f"{type(exc).__name__}: {text}"
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            text += f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})"
    return text


def _finish(run: CohortRun, jobs: list[dict], records: list[dict]) -> None:
    """Run table, failed cases' QC records and the QC page: written by the driver alone."""
    from segkit.tables import save_table

    if run.run_table is not None:
        save_table(records, run.run_table, "tsv", RUN_COLUMNS)
        save_table(mask_rows(jobs, records), masks_manifest(run.run_table), "csv", ["subject", "mask", "image"])
    if run.qc_dir is not None:
        from segkit.qc.report import build_report, write_failed_record

        by_id = {job["case"].id: job for job in jobs}
        for rec in records:
            if rec["status"] == "failed":
                write_failed_record(Path(run.qc_dir), rec["id"], by_id[rec["id"]]["case"].inputs, rec["error"])
        build_report(Path(run.qc_dir))


def mask_rows(jobs: list[dict], records: list[dict]) -> list[dict]:
    """One row per finished mask (subject: the case id, plus the label when the task writes several)."""
    from segkit.cohort.work import plan_case

    finished = {r["id"] for r in records if r["status"] in ("done", "skipped")}
    rows = []
    for job in jobs:
        if job["case"].id not in finished:
            continue
        masks = plan_case(job)[2].masks
        for label, path in masks.items():
            subject = job["case"].id if len(masks) == 1 else f"{job['case'].id}_{label}"
            rows.append({"subject": subject, "mask": str(Path(path).resolve()),
                         "image": str(Path(job["case"].inputs[0]).resolve())})
    return rows
