"""The typer app every subcommand module adds itself to (kept apart from main.py, which imports
those modules, so that no two modules import each other)."""

from __future__ import annotations

import typer

from segkit import __version__

app = typer.Typer(
    name="segkit",
    help="Task-based medical image segmentation: verified model installs, geometry-safe outputs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"segkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug
