"""`segment` over a cohort: cases from --bids, --manifest or --glob, run on Dask (segkit.cohort.run),
with a run table, an optional QC report and, for BIDS, a derivatives dataset_description.json."""

from __future__ import annotations

from pathlib import Path

from segkit.cohort.inputs import DERIVATIVES, CohortError, bids_cases, dataset_description, glob_cases, manifest_cases
from segkit.cohort.options import CohortOptions
from segkit.cohort.run import RUN_TABLE, CohortRun, execute, parse_shard

SETTINGS = ("device", "largest", "fill_holes", "remove_small", "series")


def cohort_cases(task: str | None, cohort: CohortOptions, output, options: dict) -> tuple[Path, list]:
    """(the cohort's output root, its cases)."""
    source = cohort.source()
    if source == "bids":
        out = Path(output) if output is not None else Path(cohort.bids)
        cases = bids_cases(Path(cohort.bids), out, cohort.bids_suffix, participants=cohort.participant_label,
                           sessions=cohort.session, datatype=cohort.datatype)
        return out / DERIVATIVES, cases
    if output is None and source == "glob":
        raise CohortError("--glob needs -o DIR for the outputs")
    if source == "glob":
        return Path(output), glob_cases(cohort.glob, Path(output))
    if source == "manifest":
        root = Path(output) if output is not None else Path(cohort.manifest).parent
        return root, manifest_cases(Path(cohort.manifest), None if output is None else Path(output), _task_flags(task, options))
    raise CohortError("give a cohort with --bids DIR, --manifest CSV or --glob PATTERN")


def _task_flags(task: str | None, options: dict) -> dict:
    from segkit.api import resolve_task
    from segkit.tasks.catalog import not_runnable, segment_options_class
    from segkit.tasks.options import flags_of

    spec = resolve_task(task, options.get("model"))
    options_class = segment_options_class(spec)
    if options_class is None:
        raise not_runnable(spec, "run")
    return {flag.name: flag for flag in flags_of(options_class)}


def segment_cohort(task: str | None, cohort: CohortOptions, *, output=None, qc=None, command_line: str = "",
                   progress=None, say=None, **options) -> tuple[list[dict], Path]:
    """Segment every case of the cohort: (one record per case, status done/skipped/failed; the run table)."""
    cohort.validate()
    root, cases = cohort_cases(task, cohort, output, options)
    shard = parse_shard(cohort.shard, len(cases))
    table = cohort.run_table or root / (RUN_TABLE if shard is None else f"segkit_runs.shard-{shard[0]}-of-{shard[1]}.tsv")
    run = CohortRun(
        task=task, cases=cases, options={k: v for k, v in options.items() if k not in SETTINGS},
        settings={k: options[k] for k in SETTINGS if k in options}, qc_dir=None if qc is None else Path(qc),
        force=cohort.force, retries=cohort.retries, shard=cohort.shard, run_table=Path(table),
        command_line=command_line,
    )
    records = execute(run, cohort.cluster_settings(), progress, say)
    if cohort.source() == "bids":
        from segkit.io.writer import atomic_write_json

        atomic_write_json(root / "dataset_description.json", dataset_description(Path(cohort.bids)))
    return records, Path(table)


def summary(records: list[dict]) -> str:
    counts = {s: sum(r["status"] == s for r in records) for s in ("done", "skipped", "failed")}
    text = f"{len(records)} cases: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed"
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        text += "\nfailed cases:\n" + "\n".join(f"  {r['id']}: {r['error']}" for r in failed)
    return text
