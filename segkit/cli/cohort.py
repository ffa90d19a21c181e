"""The cohort side of `segkit segment` (--bids, --manifest, --glob: many cases on Dask) and
`segkit qc build DIR` (the QC report rebuilt from the case records on disk)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from segkit.cli.app import app

PANEL = "Cohort: many cases on Dask (local workers, a scheduler, or SLURM)"

qc_app = typer.Typer(help="QC reports of cohort runs.", no_args_is_help=True)
app.add_typer(qc_app, name="qc")


def cohort_parameters():
    """(typer parameters, option names) of the cohort flags `segment` adds for every task."""
    from segkit.cli import task_commands as tc
    from segkit.cohort.options import CohortOptions
    from segkit.tasks.options import flags_of

    flags = flags_of(CohortOptions)
    return tc.parameters(flags, lambda flag: PANEL), {flag.name for flag in flags}


def wants_cohort(values: dict, names: set[str]) -> bool:
    from segkit.cohort.options import SOURCES

    return any(values.get(name) for name in SOURCES if name in names)


def run_cohort(task, values: dict, names: set[str], own: dict) -> None:
    """Segment the cohort, print the run table's path on stdout, failures on stderr; exit 1 if any failed."""
    from segkit.cohort.command import segment_cohort, summary
    from segkit.cohort.options import CohortOptions
    from segkit.cohort.progress import CohortBar
    from segkit.cohort.run import masks_manifest
    from segkit.tasks.options import build_options

    if values.get("inputs"):
        from segkit.cohort.inputs import CohortError

        raise CohortError("give the cases either with -i or with --bids/--manifest/--glob, not both")
    cohort = build_options(CohortOptions, "segment", {name: values[name] for name in names if values[name] is not None})
    settings = {k: values[k] for k in ("device", "largest", "fill_holes", "remove_small", "series")}

    bar = CohortBar()
    try:
        records, table = segment_cohort(task, cohort, output=values["output"], qc=values["qc"],
                                        command_line=" ".join(["segkit", *sys.argv[1:]]), progress=bar,
                                        **settings, **own)
    finally:
        bar.close()
    typer.echo(str(table))
    typer.echo(str(masks_manifest(table)))
    if values["qc"] is not None:
        typer.echo(str(Path(values["qc"]) / "index.html"))
    sys.stderr.write("segkit: " + summary(records) + "\n")
    if any(r["status"] == "failed" for r in records):
        raise SystemExit(1)  # not typer.Exit: the app runs with standalone_mode=False


@qc_app.command("build")
def qc_build(folder: Path = typer.Argument(..., help="A QC folder written by `segment ... --qc DIR`.")) -> None:
    """Rebuild DIR/index.html from the case records on disk (DIR/cases/*.json)."""
    from segkit.qc.report import build_report

    typer.echo(str(build_report(folder)))
