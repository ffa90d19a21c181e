"""Which code serves a task: its registry entry names a framework (or its own `package`), and the
package's `options` module names everything else. Light on purpose: no torch, no numpy.

A task package holds:
    options.py   SegmentOptions (with `runner = "module:Class"`) and, if it can be trained,
                 TrainOptions (with `trainer = "module:function"`)
    the runner and trainer they name, imported only when a command runs them.
So a new task is a folder and a registry entry; the CLI and the API are built from these.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from segkit.errors import SegkitError

if TYPE_CHECKING:
    from segkit.registry.schema import TaskSpec

# framework named in the registry -> the package that serves it
FRAMEWORK_PACKAGES = {
    "litemedsam": "segkit.tasks.medsam",
    "nnunetv2": "segkit.tasks.nnunet",
    "sc2snet": "segkit.tasks.cc_fodf",
    "nnsam2": "segkit.tasks.lpm_nnsam2",
}


def task_package(spec: "TaskSpec") -> str | None:
    return spec.package or FRAMEWORK_PACKAGES.get(spec.framework)


def _options_module(spec: "TaskSpec"):
    package = task_package(spec)
    return None if package is None else importlib.import_module(f"{package}.options")


def segment_options_class(spec: "TaskSpec") -> type | None:
    """The task's SegmentOptions, or None when this segkit cannot run the task yet."""
    module = _options_module(spec)
    return getattr(module, "SegmentOptions", None) if module is not None else None


def train_options_class(spec: "TaskSpec") -> type | None:
    """The task's TrainOptions, or None when this segkit cannot train it."""
    module = _options_module(spec)
    return getattr(module, "TrainOptions", None) if module is not None else None


def load_target(target: str):
    """Import "module:attribute" (a runner class or a trainer function named by an options class)."""
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def runnable_specs(registry) -> list[tuple["TaskSpec", type]]:
    """(spec, SegmentOptions) of every task this segkit can run, in registry order."""
    return _specs_with(registry, segment_options_class)


def trainable_specs(registry) -> list[tuple["TaskSpec", type]]:
    """(spec, TrainOptions) of every task this segkit can train, in registry order."""
    return _specs_with(registry, train_options_class)


def _specs_with(registry, options_of) -> list[tuple["TaskSpec", type]]:
    pairs = [(spec, options_of(spec)) for spec in registry.tasks.values()]
    return [(spec, options) for spec, options in pairs if options is not None]


def not_runnable(spec: "TaskSpec", command: str) -> SegkitError:
    """Why `segment` ("run") or `train` ("trained") cannot serve this task."""
    if command == "trained" and spec.weights_published:
        return SegkitError(f"task '{spec.name}' runs its published weights; segkit has no trainer for it "
                           f"(framework {spec.framework})")
    return SegkitError(
        f"task '{spec.name}' (framework {spec.framework}) cannot be {command} by this segkit version yet"
        + (f": {spec.weights_note}" if spec.weights_note else "")
    )
