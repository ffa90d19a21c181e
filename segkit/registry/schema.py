"""Typed, validated view of models_registry.yaml.

Pure data and checks: importing this module must stay cheap (no torch, no numpy), because
`segkit --help` and `segkit list-tasks` load the registry.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segkit.errors import RegistryError

SUPPORTED_SCHEMA_VERSIONS = (1,)
KNOWN_FRAMEWORKS = ("litemedsam", "nnunetv2", "sc2snet", "aisctsam", "autosam2", "nnsam2")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_AXCODES = re.compile(r"^[RLAPSI]{3}$")
_URL_SCHEMES = ("https://", "http://", "file://", "package://")


@dataclass(frozen=True)
class LabelSpec:
    name: str
    values: tuple[int, ...]  # a label may cover several values (nnU-Net region-based training)
    suffix: str


@dataclass(frozen=True)
class ArtifactSpec:
    """A side output a task writes beside its masks: `<input stem><suffix><extension>`."""

    name: str  # e.g. "peaks"
    suffix: str  # e.g. "_peaks" (a public API, like label suffixes)
    extension: str  # ".nii.gz", ".tsv", ...
    when: str | None = None  # the option that asks for it (e.g. "save_peaks"); None: whenever the runner makes it


@dataclass(frozen=True)
class FileSpec:
    name: str
    version: str
    sha256: str | None
    size: int | None
    unpack: bool
    mirrors: tuple[str, ...]
    checksum_published: bool = True
    role: str = "model"


@dataclass(frozen=True)
class InputContract:
    modality: str
    channels: tuple[dict, ...]
    orientation: str  # three axis codes such as "RPI", or "native"
    spacing: str
    extra: dict = field(default_factory=dict)

    def summary(self) -> str:
        names = ", ".join(str(c.get("name")) for c in self.channels)
        return f"{self.modality}; {names}; orientation {self.orientation}"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    citation: str
    framework: str
    weights_published: bool
    input: InputContract
    labels: tuple[LabelSpec, ...]
    files: tuple[FileSpec, ...]
    weights_note: str = ""
    artifacts: tuple[ArtifactSpec, ...] = ()
    threshold: float | None = None  # probability cut-off of the model's output, where it has one
    package: str | None = None  # Python package serving the task, when not the framework's own

    def artifact(self, name: str) -> ArtifactSpec:
        for artifact in self.artifacts:
            if artifact.name == name:
                return artifact
        raise KeyError(f"task '{self.name}' declares no artifact '{name}' in the registry")


@dataclass(frozen=True)
class Registry:
    path: Path
    tasks: dict[str, TaskSpec]

    def get(self, name: str) -> TaskSpec:
        from segkit.errors import SegkitError

        if name not in self.tasks:
            known = ", ".join(sorted(self.tasks))
            raise SegkitError(f"unknown task '{name}'; known tasks: {known} (see `segkit list-tasks`)")
        return self.tasks[name]


class _Field:
    """Reads one mapping while remembering where it sits, so every error names entry and field."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise RegistryError(f"{where}: expected a mapping, got {type(data).__name__}")
        self.data = data
        self.where = where

    def fail(self, key: str, why: str) -> RegistryError:
        return RegistryError(f"{self.where}, field '{key}': {why}")

    def get(self, key: str, kind: type | tuple, *, required: bool = True, default: Any = None) -> Any:
        if key not in self.data:
            if required:
                raise self.fail(key, "is missing")
            return default
        value = self.data[key]
        if value is None and not required:
            return default
        if kind is int and isinstance(value, bool):
            raise self.fail(key, "must be an integer")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"must be {names}, got {type(value).__name__}")
        return value

    def nullable(self, key: str, kind: type) -> Any:
        """A field that must be written out but may be null (e.g. an unpublished checksum)."""
        if key not in self.data:
            raise self.fail(key, "is missing (write null if it is unknown)")
        return self.get(key, kind, required=False, default=None)

    def text(self, key: str, *, required: bool = True, default: str = "") -> str:
        value = self.get(key, str, required=required, default=default)
        if required and not value.strip():
            raise self.fail(key, "must not be empty")
        return value


def _parse_label(raw: Any, where: str) -> LabelSpec:
    f = _Field(raw, where)
    name = f.text("name")
    value = f.get("value", (int, list))
    values = tuple(value) if isinstance(value, list) else (value,)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise f.fail("value", "must be a positive integer or a non-empty list of them")
    suffix = f.text("suffix")
    if not suffix.startswith("_") or "/" in suffix:
        raise f.fail("suffix", "must start with '_' and contain no '/'")
    return LabelSpec(name=name, values=values, suffix=suffix)


def _parse_artifact(raw: Any, where: str) -> ArtifactSpec:
    f = _Field(raw, where)
    suffix = f.text("suffix")
    if not suffix.startswith("_") or "/" in suffix:
        raise f.fail("suffix", "must start with '_' and contain no '/'")
    extension = f.text("extension")
    if not extension.startswith("."):
        raise f.fail("extension", "must start with '.' (e.g. .nii.gz, .tsv)")
    return ArtifactSpec(name=f.text("name"), suffix=suffix, extension=extension,
                        when=f.get("when", str, required=False, default=None))


def _parse_file(raw: Any, where: str) -> FileSpec:
    f = _Field(raw, where)
    name = f.text("name")
    if "/" in name or name in (".", ".."):
        raise f.fail("name", "must be a plain file name")
    version = str(f.get("version", (str, int, float)))
    checksum_published = f.get("checksum_published", bool, required=False, default=True)
    sha256 = f.nullable("sha256", str)
    if sha256 is None and checksum_published:
        raise f.fail("sha256", "is null, but the file does not say `checksum_published: false`")
    if sha256 is not None and not _SHA256.match(sha256):
        raise f.fail("sha256", "must be 64 lowercase hex digits")
    size = f.nullable("size", int)
    if size is not None and size <= 0:
        raise f.fail("size", "must be positive")
    mirrors = f.get("mirrors", list)
    if not mirrors:
        raise f.fail("mirrors", "must list at least one URL")
    for url in mirrors:
        if not isinstance(url, str) or not url.startswith(_URL_SCHEMES):
            raise f.fail("mirrors", f"'{url}' is not an http(s)://, file:// or package:// URL")
    return FileSpec(
        name=name,
        version=version,
        sha256=sha256,
        size=size,
        unpack=f.get("unpack", bool),
        mirrors=tuple(mirrors),
        checksum_published=checksum_published,
        role=f.get("role", str, required=False, default="model"),
    )


def _parse_input(raw: Any, where: str) -> InputContract:
    f = _Field(raw, where)
    channels = f.get("channels", list)
    if not channels or not all(isinstance(c, dict) and c.get("name") for c in channels):
        raise f.fail("channels", "must be a non-empty list of mappings with a 'name'")
    orientation = f.text("orientation")
    if orientation != "native" and not _valid_axcodes(orientation):
        raise f.fail("orientation", f"'{orientation}' is not 'native' nor three axis codes like RPI or RAS")
    known = {"modality", "channels", "orientation", "spacing"}
    return InputContract(
        modality=f.text("modality"),
        channels=tuple(channels),
        orientation=orientation,
        spacing=str(f.get("spacing", (str, int, float))),
        extra={k: v for k, v in f.data.items() if k not in known},
    )


def _valid_axcodes(codes: str) -> bool:
    if not _AXCODES.match(codes):
        return False
    axes = {c in "RL" for c in codes}, {c in "AP" for c in codes}, {c in "SI" for c in codes}
    return all(True in a for a in axes)


def _parse_task(name: str, raw: Any) -> TaskSpec:
    where = f"task '{name}'"
    if not _TASK_NAME.match(name):
        raise RegistryError(f"{where}: task names are lowercase letters, digits and '_'")
    f = _Field(raw, where)
    framework = f.text("framework")
    package = f.get("package", str, required=False, default=None)
    if framework not in KNOWN_FRAMEWORKS and package is None:
        raise f.fail("framework", f"'{framework}' is not one of {', '.join(KNOWN_FRAMEWORKS)} (or name a `package`)")
    labels = f.get("labels", list)
    if not labels:
        raise f.fail("labels", "must list at least one label")
    files = f.get("files", list)
    weights_published = f.get("weights_published", bool)
    weights_note = f.get("weights_note", str, required=False, default="")
    if not weights_published and not weights_note.strip():
        raise f.fail("weights_note", "is required when weights_published is false (say how to get a model)")
    parsed_labels = tuple(_parse_label(lab, f"{where}, labels[{i}]") for i, lab in enumerate(labels))
    artifacts = tuple(_parse_artifact(a, f"{where}, artifacts[{i}]")
                      for i, a in enumerate(f.get("artifacts", list, required=False, default=[])))
    suffixes = [lab.suffix for lab in parsed_labels] + [a.suffix for a in artifacts]
    if len(set(suffixes)) != len(suffixes):
        raise f.fail("labels", "output suffixes (labels and artifacts) must be unique")
    threshold = f.get("threshold", (int, float), required=False, default=None)
    if threshold is not None and not 0 < threshold < 1:
        raise f.fail("threshold", "must lie between 0 and 1")
    return TaskSpec(
        name=name,
        description=f.text("description"),
        citation=f.text("citation"),
        framework=framework,
        weights_published=weights_published,
        input=_parse_input(f.get("input", dict), f"{where}, input"),
        labels=parsed_labels,
        files=tuple(_parse_file(fl, f"{where}, files[{i}]") for i, fl in enumerate(files)),
        weights_note=weights_note,
        artifacts=artifacts,
        threshold=None if threshold is None else float(threshold),
        package=package,
    )


def parse_registry(data: Any, path: Path) -> Registry:
    top = _Field(data, f"registry {path}")
    version = top.get("schema_version", int)
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise top.fail("schema_version", f"{version} is not supported (this segkit reads {SUPPORTED_SCHEMA_VERSIONS})")
    tasks = top.get("tasks", dict)
    return Registry(path=path, tasks={str(n): _parse_task(str(n), t) for n, t in tasks.items()})


def default_registry_path() -> Path:
    """The registry shipped in the wheel, or the repository's copy in a source checkout."""
    override = os.environ.get("SEGKIT_REGISTRY")
    if override:
        return Path(override).expanduser()
    packaged = Path(__file__).resolve().parents[1] / "models_registry.yaml"
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "models_registry.yaml"


def load_registry(path: Path | None = None) -> Registry:
    import yaml  # pyyaml is light; imported here so that schema checks in tests need no file

    from segkit.registry.local_file import parse_yaml

    path = Path(path) if path is not None else default_registry_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc.strerror or exc}") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"registry {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return _with_local_tasks(parse_registry(data, path))


def _with_local_tasks(registry: Registry) -> Registry:
    """The registry plus the tasks added by `install-task NAME --custom-url` (shipped names win)."""
    from segkit.registry.local_file import local_tasks_path, read_local_tasks

    path = local_tasks_path()
    raw = read_local_tasks(path)
    if not raw:
        return registry
    local = parse_registry({"schema_version": 1, "tasks": raw}, path)
    return Registry(path=registry.path, tasks={**local.tasks, **registry.tasks})
