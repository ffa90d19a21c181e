"""The `segkit` command: a thin typer app. Each subcommand lives in its own module.

Heavy libraries (torch, onnxruntime, dipy) are never imported here: `segkit --help` and
`segkit list-tasks` must start fast.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import traceback

import typer

from segkit.cli.app import app
from segkit.errors import SegkitError

# Where each command is defined. Only the command named on the command line is imported and built, so
# `segkit eval` in a shell loop does not pay for the registry, yaml and every task's options; `segkit
# --help` (or an unknown name, for typer's error) builds them all.
COMMAND_MODULES = {
    "segment": "segkit.cli.segment",
    "train": "segkit.cli.train",
    "eval": "segkit.cli.eval",
    "quantify": "segkit.cli.quantify",
    "install-task": "segkit.cli.install",
    "list-tasks": "segkit.cli.list_tasks",
    "qc": "segkit.cli.cohort",  # `segkit qc build DIR`
}


# Commands whose numpy work has no matrix products worth threads. OpenBLAS starts a thread per core
# when numpy is imported and lets them spin: one thread saves 0.1-0.2 CPU s of a small `segkit
# eval` (0.86 -> 0.70 CPU s, 8^3 pair, 2 cores), which a shell loop over a study pays per case.
SINGLE_THREADED_BLAS = ("eval", "quantify")


def _command_named(argv: list[str]) -> str | None:
    """The subcommand on the command line: the first word that is not an option (the app's own options,
    --debug and --version, take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def register_commands(argv: list[str] | None = None) -> typer.Typer:
    """Add the command(s) argv needs to `app` and return it. segment and train are rebuilt for the registry
    in force now (and for `-task X --help`, with X's options only); the other modules register themselves
    on import."""
    argv = list(argv or [])
    name = _command_named(argv)
    modules = [COMMAND_MODULES[name]] if name in COMMAND_MODULES else list(COMMAND_MODULES.values())
    app.registered_commands[:] = [c for c in app.registered_commands if c.name not in ("segment", "train")]
    for module_name in modules:
        module = importlib.import_module(module_name)
        if hasattr(module, "register"):
            module.register(app, argv)
    return app


def _fail(message: str, code: int) -> None:
    first_line = " ".join(str(message).split("\n")[0].split()) or "unknown error"
    sys.stderr.write(f"segkit: error: {first_line}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def main() -> None:
    """The installed `segkit` script: `run`, then, for eval and quantify, a shutdown without the
    garbage collector's passes over every object the imports made.

    Interpreter shutdown collects cyclic garbage over all objects: numpy's, nibabel's and typer's take
    30-70 ms, a tenth of a small `segkit eval` that a shell loop over a study pays per case. Objects
    frozen with gc.freeze are left out of those passes (only garbage in cycles then stays until the
    process ends). Both commands have written and closed their outputs by the time they return.
    Both run in one thread, so the modules nibabel imports and they never use can wait for a first use
    (segkit.runtime.lazy_imports).
    """
    light = _command_named(sys.argv[1:]) in SINGLE_THREADED_BLAS
    if light:
        from segkit.runtime.lazy_imports import UNUSED_BY_NIBABEL_READS, defer

        defer(UNUSED_BY_NIBABEL_READS)
    try:
        run()
    finally:
        if light:
            gc.freeze()


def run(argv: list[str] | None = None) -> None:
    """Console entry point: maps user errors to exit 2, internal errors to exit 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if _command_named(args) in SINGLE_THREADED_BLAS:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported; a user's setting wins
    from segkit.runtime.quiet import configure

    configure(debug)  # library warnings and notes only with --debug: an error stays one line
    try:
        register_commands(args)
        app(args=args, prog_name="segkit", standalone_mode=False)
    except SegkitError as exc:
        if debug:
            traceback.print_exc()
        from segkit.runtime.memory import explained

        _fail(explained(str(exc)), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - last-resort handler for the CLI only
        from segkit.runtime.memory import CAPPED, is_allocation_failure, out_of_memory_message

        if is_allocation_failure(exc):  # a cap the user set is theirs to raise (2); else the machine's (1)
            _fail(out_of_memory_message(exc), 2 if CAPPED["text"] else 1)
        usage = _usage_error_code(exc)
        if usage is not None:
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            _fail(f"{message} (see `segkit --help`)", usage)
        if debug:
            traceback.print_exc()
        _fail(f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for the traceback", 1)


def _usage_error_code(exc: Exception) -> int | None:
    """Exit code for command-line parsing errors (typer >= 0.20 vendors click; older typer uses click)."""
    bases = [getattr(typer, "TyperException", None)]
    try:
        import click

        bases.append(click.ClickException)
    except ImportError:
        pass
    if any(b is not None and isinstance(exc, b) for b in bases):
        return getattr(exc, "exit_code", 2) or 2
    if isinstance(exc, getattr(typer, "Abort", ())):
        return 1
    return None


if __name__ == "__main__":
    main()
