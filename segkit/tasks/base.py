"""The task protocol: what every task runner provides, so the CLI never special-cases a task.

A runner is built from its registry entry (and its installed files). `predict` reads the inputs
it needs from the request, runs preprocess -> model -> postprocess, and returns one binary mask per
output label in the geometry of a reference input image. Writing files (masks, sidecars, QC) is
done once, for all tasks, by `segkit.api`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:  # only for type hints: keep this module free of numpy/torch imports
    import numpy as np

    from segkit.api import SegmentRequest
    from segkit.io.image import Image
    from segkit.registry.schema import TaskSpec

ProgressFn = Callable[[int, int], None]


@dataclass
class OutputMask:
    name: str  # label name, e.g. "sc"
    suffix: str  # file suffix, e.g. "_sc_seg" (a public API: fixed in the registry)
    mask: "np.ndarray"  # uint8 {0,1}, exactly the reference image's array shape
    value: int = 1


@dataclass
class Prediction:
    reference: "Image"  # the input whose shape and affine every output takes
    outputs: list[OutputMask]
    info: dict = field(default_factory=dict)  # sidecar facts: model, sha256, device, backend, prompts, ...


class TaskRunner(Protocol):
    spec: "TaskSpec"

    def predict(self, request: "SegmentRequest", progress: ProgressFn | None) -> Prediction: ...


# framework name in the registry -> "module:Class" of its runner (imported only when used)
RUNNERS = {
    "litemedsam": "segkit.tasks.medsam.task:MedsamTask",
    "sc2snet": "segkit.tasks.cc_fodf.task:CcFodfTask",
    "nnunetv2": "segkit.tasks.nnunet.task:NnunetTask",
    "nnsam2": "segkit.tasks.lpm_nnsam2.task:LpmNnsam2Task",
}


def runner_for(spec: "TaskSpec", **kwargs) -> TaskRunner:
    from segkit.errors import SegkitError

    target = RUNNERS.get(spec.framework)
    if target is None:
        raise SegkitError(f"task '{spec.name}' (framework {spec.framework}) cannot be run by this segkit version yet")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)(spec, **kwargs)
