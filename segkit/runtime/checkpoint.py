"""Every PyTorch checkpoint segkit reads goes through here: data only, never code.

torch.load with weights_only=False (nnunetv2's default, and older torch's) rebuilds any object the
pickle names, so a crafted checkpoint runs code when loaded. segkit loads with torch's weights-only
unpickler and an allow-list of plain numpy scalar types (nnU-Net writes them in its training log),
and turns a refusal or a corrupt file into one clear line (exit 2).
"""

from __future__ import annotations

from pathlib import Path

from segkit.errors import SegkitError, one_line


def safe_types() -> list:
    """Non-tensor types genuine checkpoints hold (numpy scalars and their dtypes); none can run code."""
    import numpy as np

    scalar = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(name)) for name in ("float16", "float32", "float64", "int32", "int64", "bool")]
    return [scalar.multiarray.scalar, np.dtype, *dtypes]


def load_data(path: Path | str):
    """The checkpoint at `path` (on the CPU), or a SegkitError if it holds anything but data."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(safe_types()):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise SegkitError(
            f"{path}: refused: this checkpoint holds objects other than weights ({_reason(exc)}); "
            "segkit loads only plain weights, so nothing in it was run"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise SegkitError(f"{path}: not a readable PyTorch checkpoint ({one_line(exc)})") from None


def _reason(exc: Exception) -> str:
    """torch's long advice reduced to the offending global, e.g. 'GLOBAL posix.system'."""
    import re

    found = re.search(r"GLOBAL [\w.]+", str(exc))
    return found.group(0) if found else "an object torch's weights-only loader does not allow"
