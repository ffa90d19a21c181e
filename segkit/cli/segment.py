"""`segkit segment`: run a task on images and write its masks beside them (or under -o).

The command's options are the common ones (SegmentCommon) and every task's own, generated from
their option classes; see segkit/cli/task_commands.py.
"""

from __future__ import annotations

import sys

import typer

from segkit.cli import task_commands as tc

HELP = "Segment images with a task's model. Outputs keep the input's exact shape and affine."


def register(app: typer.Typer, argv: list[str]) -> None:
    from segkit.cli import cohort
    from segkit.tasks.common_options import SegmentCommon

    params, flags, common_names = tc.command_parameters("segment", SegmentCommon, argv)
    cohort_params, cohort_names = cohort.cohort_parameters()
    params += cohort_params

    def segment(ctx: typer.Context, **values) -> None:
        from segkit import api
        from segkit.cli.progress import SliceProgress
        from segkit.runtime.memory import apply_memory_cap

        typed = tc.given_on_command_line(ctx, values)
        task = values["task"]
        if cohort.wants_cohort(values, cohort_names):
            if values["max_memory"]:
                raise tc.OptionError("--max-memory caps one process; a cohort's workers take --memory-per-worker")
            spec = api.resolve_task(task, typed.get("model"))
            tc.refuse_foreign(spec.name, typed, _segment_options_class(spec), flags, common_names | cohort_names)
            own = {k: v for k, v in typed.items() if k not in common_names | cohort_names}
            return cohort.run_cohort(task, values, cohort_names, own)
        if not values["inputs"]:
            raise tc.OptionError("Missing option '-i' / '--input' (the image to segment)")
        stray = sorted(name for name in typed if name in cohort_names)
        if stray:
            raise tc.OptionError(f"--{stray[0].replace('_', '-')} applies to a cohort: add --bids, --manifest or --glob")
        spec = api.resolve_task(task, typed.get("model"))
        tc.refuse_foreign(spec.name, typed, _segment_options_class(spec), flags, common_names | cohort_names)
        own = {k: v for k, v in typed.items() if k not in common_names | cohort_names}
        apply_memory_cap(values["max_memory"])  # before any image is read
        with SliceProgress(spec.name) as progress:
            written = api.segment(
                task, tc.path_list(values["inputs"]), output=values["output"], qc=values["qc"],
                device=values["device"], largest=values["largest"], fill_holes=values["fill_holes"],
                remove_small=values["remove_small"], series=values["series"],
                command_line=" ".join(["segkit", *sys.argv[1:]]),
                progress=progress, **own,
            )
        for path in written:
            typer.echo(str(path))

    app.command("segment", help=HELP)(tc.with_signature(segment, params))


def _segment_options_class(spec):
    from segkit.tasks.catalog import not_runnable, segment_options_class

    options_class = segment_options_class(spec)
    if options_class is None:
        raise not_runnable(spec, "run")
    return options_class
