"""`segkit segment` and `segkit train`, generated from the tasks' option classes.

Nothing here names a task: the options come from the registry's tasks (segkit/tasks/catalog.py),
grouped into one help panel per set of tasks that take them. With `-task X --help` only X's own
options are shown. An option the chosen task does not take is refused (exit 2) by name.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import List, Optional

import typer

from segkit.tasks.options import Flag, OptionError, check_consistent, flags_of

ALIAS_SEPARATOR = "__alias_"


def task_option_table(kind: str, only_task: str | None) -> tuple[dict[str, Flag], dict[str, list[str]], dict]:
    """(flags by field name, task names by field name, options class by task) over the registry."""
    from segkit.registry.schema import load_registry
    from segkit.tasks.catalog import runnable_specs, trainable_specs

    try:
        registry = load_registry()
    except Exception:  # noqa: BLE001 - a broken registry is reported when the command runs, not by --help
        return {}, {}, {}
    pairs = runnable_specs(registry) if kind == "segment" else trainable_specs(registry)
    pairs = [(spec, cls) for spec, cls in pairs if only_task in (None, spec.name)]
    flags = check_consistent([(spec.name, cls) for spec, cls in pairs])
    owners: dict[str, list[str]] = {}
    for spec, cls in pairs:
        for flag in flags_of(cls):
            owners.setdefault(flag.name, []).append(spec.name)
    return flags, owners, {spec.name: cls for spec, cls in pairs}


def command_parameters(kind: str, common_class: type, argv: list[str]):
    """(typer parameters, task flags by name, common option names) for `segment` or `train`;
    with `-task X --help` on the command line, only X's own options besides the common ones."""
    only = task_in_argv(argv) if ("--help" in argv or "-h" in argv) else None
    flags, owners, _ = task_option_table(kind, only)
    common = flags_of(common_class)
    params = parameters(common) + parameters(list(flags.values()), panel_for(owners))
    return params, flags, {flag.name for flag in common}


def parameters(flags: list[Flag], panel_of=lambda flag: None) -> list[inspect.Parameter]:
    """typer parameters for option flags; each hidden alias becomes its own hidden option."""
    params = []
    for flag in flags:
        params.append(_parameter(flag.name, flag, flag.flags, panel_of(flag), hidden=False))
        for i, alias in enumerate(flag.hidden_aliases):
            params.append(_parameter(f"{flag.name}{ALIAS_SEPARATOR}{i}", flag, (alias,), None, hidden=True))
    return params


def _parameter(name: str, flag: Flag, decls: tuple[str, ...], panel: str | None, hidden: bool) -> inspect.Parameter:
    if flag.kind is bool:
        annotation, default = bool, flag.default
        if flag.negative:
            decls = (f"{decls[0]}/{flag.negative}", *decls[1:])
    elif flag.multiple:
        annotation, default = Optional[List[flag.kind]], None
    else:
        annotation, default = Optional[flag.kind], flag.default
    info = typer.Option(default, *decls, help=flag.help, rich_help_panel=panel, hidden=hidden, show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def with_signature(function, params: list[inspect.Parameter]):
    """Give `function(ctx, **values)` the explicit signature typer reads its options from."""
    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    function.__signature__ = inspect.Signature([context, *params])
    function.__annotations__ = {"ctx": typer.Context, **{p.name: p.annotation for p in params}}
    return function


def given_on_command_line(ctx: typer.Context, values: dict) -> dict:
    """The values the user typed (not defaults), with hidden aliases folded into their option."""
    typed = {}
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        if source is None or source.name not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        base = name.split(ALIAS_SEPARATOR)[0]
        if base in typed:
            raise OptionError(f"an option was given twice under two spellings ({base.replace('_', '-')})")
        typed[base] = value
    return typed


def refuse_foreign(task: str, typed: dict, own_class: type | None, flags: dict[str, Flag], common: set[str]) -> None:
    """Exit 2 for any typed option that the chosen task does not declare."""
    own = {flag.name for flag in flags_of(own_class)} if own_class is not None else set()
    foreign = [name for name in typed if name not in own and name not in common]
    if foreign:
        names = ", ".join(flags[name].primary if name in flags else name for name in foreign)
        taken = ", ".join(flag.primary for flag in flags_of(own_class)) if own_class is not None else "none"
        raise OptionError(f"task '{task}' does not take {names} (its own options: {taken})")


def panel_for(owners: dict[str, list[str]]):
    return lambda flag: "Options of " + ", ".join(sorted(owners.get(flag.name, [])))


def task_in_argv(argv: list[str]) -> str | None:
    """The -task value on a command line, read before the commands are built (for -task X --help)."""
    for i, arg in enumerate(argv):
        if arg in ("-task", "--task", "-t") and i + 1 < len(argv):
            return argv[i + 1]
        for prefix in ("--task=", "-task="):
            if arg.startswith(prefix):
                return arg[len(prefix):]
    return None


def path_list(values) -> list[Path]:
    return [Path(v) for v in (values or [])]
