"""`segkit list-tasks`: every task, what it needs, and whether it is installed (like `sct_deepseg -h`)."""

from __future__ import annotations

import typer

from segkit.cli.app import app


def _status(spec) -> str:
    from segkit.registry.store import is_installed

    if is_installed(spec.name):
        return "installed"
    if not spec.weights_published:
        backbone = " (backbone downloadable)" if spec.files else ""
        return f"no published weights: train{backbone}"
    if spec.files and all(m.startswith("package://") for f in spec.files for m in f.mirrors):
        return "bundled (offline)"
    return "not installed"


@app.command("list-tasks")
def list_tasks(
    plain: bool = typer.Option(False, "--plain", help="Tab-separated output for scripts."),
) -> None:
    """List every task with its description, inputs and install status."""
    from segkit.registry.schema import load_registry

    registry = load_registry()
    rows = [(s.name, _status(s), s.description, s.input.summary()) for s in registry.tasks.values()]
    if plain:
        for row in rows:
            typer.echo("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="segkit tasks", show_lines=True)
    for column in ("task", "status", "description", "inputs"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
