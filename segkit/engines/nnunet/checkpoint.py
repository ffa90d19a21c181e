"""nnU-Net checkpoints read as data, never as code.

nnunetv2 unpickles checkpoints with weights_only=False, so a crafted checkpoint (a downloaded
results zip, a --model folder, a workspace being resumed) could run any code it names. segkit
reads every nnU-Net checkpoint itself (segkit.runtime.checkpoint, weights only) and hands the
loaded dictionary to nnunetv2.
"""

from __future__ import annotations

from pathlib import Path

from segkit.errors import SegkitError
from segkit.runtime.checkpoint import load_data


def load_checkpoint(path: Path | str) -> dict:
    checkpoint = load_data(path)
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise SegkitError(f"{path}: not an nnU-Net checkpoint (no network_weights)")
    return checkpoint
