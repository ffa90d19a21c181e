"""Time the whole `segkit quantify` process (volume + intensity) on a 256^3 mask/image pair.

    .venv/bin/python benchmarks/bench_quantify.py [--repeats 3]

Includes interpreter start, imports and reading both files; the target is under 1 s wall.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    grid = np.indices((256, 256, 256), sparse=True)
    labels = np.zeros((256, 256, 256), np.uint8)
    labels[sum((g - 128.0) ** 2 for g in grid) <= 70.0**2] = 1
    labels[sum((g - 100.0) ** 2 for g in grid) <= 20.0**2] = 2
    image = rng.normal(100, 20, size=labels.shape).astype(np.int16)
    command = [str(Path(sys.executable).parent / "segkit"), "quantify"]
    with tempfile.TemporaryDirectory() as tmp:
        mask_path, image_path = Path(tmp) / "mask.nii.gz", Path(tmp) / "image.nii.gz"
        nib.save(nib.Nifti1Image(labels, np.eye(4)), str(mask_path))
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(image_path))
        for name, extra in (("volume", []), ("volume + intensity", ["-i", str(image_path), "--volume", "--intensity"])):
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                subprocess.run(command + ["-m", str(mask_path)] + extra, check=True, stdout=subprocess.DEVNULL)
                best = min(best, time.perf_counter() - start)
            print(f"whole `segkit quantify` ({name}) on 256^3: {best:.3f} s wall (best of {args.repeats})")


if __name__ == "__main__":
    main()
