"""`segkit train`: train a model for a task (nnU-Net v2, SC2S-Net, nnSAM2 rounds, ...).

The options are the common ones (TrainCommon) and every trainable task's own, generated from
their option classes; without -task, --data is trained as a plain nnU-Net v2 dataset.
"""

from __future__ import annotations

import sys

import typer

from segkit.cli import task_commands as tc

HELP = "Train a model for a task on your data; writes a model package for `segment --model` or install-task."


def register(app: typer.Typer, argv: list[str]) -> None:
    from segkit.tasks.common_options import TrainCommon

    params, flags, common_names = tc.command_parameters("train", TrainCommon, argv)

    def train(ctx: typer.Context, **values) -> None:
        from segkit import api
        from segkit.runtime.memory import apply_memory_cap

        typed = tc.given_on_command_line(ctx, values)
        task = values["task"]
        spec = api.resolve_task(task) if task else None
        own_class = _train_options_class(spec)
        tc.refuse_foreign(task or "nnunet (a plain nnU-Net v2 dataset)", typed, own_class, flags, common_names)
        common_values = {k: values[k] for k in common_names if k not in ("task", "max_memory")}
        own = {k: v for k, v in typed.items() if k not in common_names}
        apply_memory_cap(values["max_memory"])  # the options are checked, no image is read yet
        rows = api.train(task, say=lambda text: sys.stderr.write(text + "\n"), **common_values, **own)
        for row in rows:
            typer.echo("\t".join(str(v) for v in row))

    app.command("train", help=HELP)(tc.with_signature(train, params))


def _train_options_class(spec):
    from segkit.tasks.catalog import not_runnable, train_options_class

    if spec is None:
        from segkit.tasks.nnunet.options import TrainOptions

        return TrainOptions
    options_class = train_options_class(spec)
    if options_class is None:
        raise not_runnable(spec, "trained")
    return options_class
