"""AutoSAM2's 3D UNet (brats_autosam2) through torch and through ONNX Runtime, in one run.

    .venv/bin/python benchmarks/bench_brats_backends.py [--width 1.0] [--shapes 64x128x128,160x240x240] [--repeats 2]

The network at the method's width (random weights: speed only; agreement is reported too), exported
as segkit exports it (segkit.tasks.brats_autosam2.backend: dynamic spatial axes, checked at export),
then each volume shape (a BraTS case is 155x240x240, padded to 160x240x240) run by both: best of
--repeats wall seconds, the ratio, max |logits difference| and the share of voxels whose argmax
differs. The export's one-time cost is printed apart.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def best_seconds(call, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--shapes", default="64x128x128,160x240x240")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch

    from segkit.tasks.brats_autosam2.backend import use_backend
    from segkit.tasks.brats_autosam2.hybrid import AutoSam2
    from segkit.tasks.brats_autosam2.network import NetworkConfig

    os.environ["SEGKIT_HOME"] = tempfile.mkdtemp(prefix="segkit-brats-bench-")  # a fresh export cache
    torch.manual_seed(0)
    eager = AutoSam2(NetworkConfig(width=args.width)).eval()
    exported = AutoSam2(NetworkConfig(width=args.width)).eval()
    exported.load_state_dict(eager.state_dict())
    started = time.perf_counter()
    backend = use_backend(exported, "bench" + "0" * 59, "cpu", "onnx")
    print(f"UNet width {args.width}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; export and check: "
          f"{time.perf_counter() - started:.1f} s ({backend})")
    print("| volume (D x H x W) | torch eager | ONNX Runtime | torch / ORT | max abs logits diff | argmax differs |")
    print("|---|---|---|---|---|---|")
    for text in args.shapes.split(","):
        shape = tuple(int(n) for n in text.split("x"))
        volume = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 4, *shape)).astype(np.float32))
        with torch.inference_mode():
            t_torch, (ref, _) = best_seconds(lambda: eager.unet(volume), args.repeats)
            t_onnx, (got, _) = best_seconds(lambda: exported.unet(volume), args.repeats)
        differs = float((ref.argmax(1) != got.argmax(1)).float().mean())
        print(f"| {text} | {t_torch:.2f} s | {t_onnx:.2f} s | {t_torch / t_onnx:.2f}x | "
              f"{float((ref - got).abs().max()):.2e} | {differs:.2e} |", flush=True)


if __name__ == "__main__":
    main()
