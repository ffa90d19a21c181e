"""`--device auto|cpu|cuda[:N]|mps` -> a torch device string, checked against what is present."""

from __future__ import annotations

import os
import re

from segkit.errors import SegkitError

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(spec: str = "auto") -> str:
    """Return "cpu", "cuda:N" or "mps". auto picks CUDA when torch sees a GPU, else the CPU.

    Asking for a device that is absent is the user's to fix (SegkitError), never a silent fallback.
    """
    spec = (spec or "auto").strip().lower()
    if not _DEVICE_PATTERN.match(spec):
        raise SegkitError(f"--device {spec!r} is not one of auto, cpu, cuda, cuda:N, mps")
    import torch

    if spec == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise SegkitError("--device mps was asked for but this torch build sees no MPS device; use --device cpu")
        return "mps"
    return _checked_cuda(spec, torch)


def _checked_cuda(spec: str, torch) -> str:
    if not torch.cuda.is_available():
        raise SegkitError(f"--device {spec} was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    index = int(spec.split(":")[1]) if ":" in spec else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise SegkitError(f"--device {spec}: only {count} CUDA device(s) present (cuda:0..cuda:{count - 1})")
    return f"cuda:{index}"


def requested_threads() -> int | None:
    """OMP_NUM_THREADS where the user set it to a positive count (the usual knob on a shared machine:
    more threads than free cores make OpenMP spin and run several times slower), else None."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def cpu_threads() -> int:
    """Threads for CPU compute: requested_threads(), else every CPU this process may run on."""
    requested = requested_threads()
    if requested is not None:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
