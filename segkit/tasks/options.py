"""Per-task options: each task declares what it takes in one typed class, importable without torch.

An options class is a dataclass whose fields are made with `option(...)`. The field carries its
command-line flag(s), help text and checks, so the CLI (`segkit segment/train`) and the Python API
(`segkit.api.segment(..., **options)`) are both built from, and validated against, the same class.

One meaning per flag name: two tasks that both take `--model` must declare it identically
(`check_consistent` enforces it; a test runs it over every task in the registry).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from segkit.errors import SegkitError


class OptionError(SegkitError):
    """An option the task does not take, or a value it cannot accept."""


@dataclass(frozen=True)
class Flag:
    """The command-line face of one option field."""

    name: str  # the dataclass field (and Python API keyword)
    flags: tuple[str, ...]  # e.g. ("--box",); a bool may add its "--no-..." form via `negative`
    kind: type  # str, int, float, bool or Path (element type when `multiple`)
    default: Any
    help: str
    multiple: bool = False  # may be repeated; comma-separated values are split when `split`
    split: bool = False
    choices: tuple[str, ...] = ()
    reads_file: bool = False  # a path the command reads (never a valid output path)
    minimum: float | None = None
    maximum: float | None = None
    negative: str | None = None  # "--no-mirroring" for a bool defaulting to True
    hidden_aliases: tuple[str, ...] = ()  # old spellings still accepted, not shown in help

    @property
    def primary(self) -> str:
        return self.flags[0]

    def signature(self) -> tuple:
        """What must agree when two tasks declare the same flag."""
        return (self.flags, self.kind, self.default, self.help, self.multiple, self.split, self.choices,
                self.reads_file, self.minimum, self.maximum, self.negative, self.hidden_aliases)


def option(default: Any, *flags: str, help: str, kind: type | None = None, **settings) -> Any:
    """A dataclass field that is also a command-line option. Lists default to empty."""
    multiple = settings.get("multiple", False)
    if kind is None:
        kind = type(default) if default is not None and not multiple else str
    meta = {"segkit_flag": dict(flags=tuple(flags), kind=kind, default=default, help=help, **settings)}
    if multiple:
        return field(default_factory=list, metadata=meta)
    return field(default=default, metadata=meta)


def flags_of(options_class: type) -> list[Flag]:
    """Every option of a class, in declaration order."""
    found = []
    for f in dataclasses.fields(options_class):
        meta = f.metadata.get("segkit_flag")
        if meta is not None:
            found.append(Flag(name=f.name, **meta))
    return found


@dataclass(frozen=True)
class TaskOptions:
    """Base of every task's options. `validate` runs before any file is read or model loaded."""

    def validate(self) -> None:
        for flag in flags_of(type(self)):
            _check_value(flag, getattr(self, flag.name))

    def files_read(self) -> list[Path]:
        """Every path option that names a file the command reads (protected from being overwritten)."""
        paths = []
        for flag in flags_of(type(self)):
            if flag.reads_file:
                value = getattr(self, flag.name)
                paths += [Path(v) for v in value] if flag.multiple else ([Path(value)] if value is not None else [])
        return paths


def _check_value(flag: Flag, value: Any) -> None:
    values = value if flag.multiple else [value]
    for item in values:
        if item is None:
            continue
        if flag.choices and item not in flag.choices:
            raise OptionError(f"{flag.primary} {item!r}: choose one of {', '.join(flag.choices)}")
        if flag.minimum is not None and item < flag.minimum:
            raise OptionError(f"{flag.primary} {item}: must be at least {flag.minimum:g}")
        if flag.maximum is not None and item > flag.maximum:
            raise OptionError(f"{flag.primary} {item}: must be at most {flag.maximum:g}")


def build_options(options_class: type, task: str, values: dict) -> TaskOptions:
    """An options object from keyword values; a keyword the task does not take is refused by name."""
    known = {flag.name: flag for flag in flags_of(options_class)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        taken = ", ".join(flag.primary for flag in known.values()) or "none"
        names = ", ".join(_as_flag(n) for n in unknown)
        raise OptionError(f"task '{task}' does not take {names} (its own options: {taken})")
    options = options_class(**{k: _coerce(known[k], v) for k, v in values.items()})
    options.validate()
    return options


def _coerce(flag: Flag, value: Any) -> Any:
    if value is None:
        return None
    if flag.multiple:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if flag.split:
            items = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
        return [flag.kind(v) for v in items]
    return value if flag.kind is bool else flag.kind(value)


def _as_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_consistent(option_classes: Sequence[tuple[str, type]]) -> dict[str, Flag]:
    """Flags by field name across tasks; two different declarations of one name are an error."""
    seen: dict[str, tuple[str, Flag]] = {}
    for owner, options_class in option_classes:
        for flag in flags_of(options_class):
            if flag.name in seen and seen[flag.name][1].signature() != flag.signature():
                raise RuntimeError(
                    f"option {flag.primary} means different things in {seen[flag.name][0]} and {owner}: "
                    "declare it once in segkit/tasks/common_options.py and reuse it"
                )
            seen.setdefault(flag.name, (owner, flag))
    return {name: flag for name, (_, flag) in seen.items()}
