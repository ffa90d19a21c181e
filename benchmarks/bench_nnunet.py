"""segkit segment --model-dir vs nnUNetv2_predict_from_modelfolder on the same model and case.

Usage: python benchmarks/bench_nnunet.py MODEL_DIR IMAGE.nii.gz [--folds 0]
Prints both wall times (each a fresh process, as a user runs them), whether the label maps are
equal voxel for voxel, and segkit's peak RSS. IMAGE must be in the model's orientation (LAS for
SCIseg) so that neither side reorients.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def _timed(command: list[str], env=None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--folds", default="0")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours_time = _timed([str(bin_dir / "segkit"), "segment", "-i", str(args.image), "--model-dir", str(args.model_dir),
                            "--folds", args.folds, "--device", "cpu", "-o", str(tmp / "ours") + "/"])
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        (tmp / "in").mkdir()
        shutil.copy(args.image, tmp / "in" / "case_0000.nii.gz")
        theirs_time = _timed([str(bin_dir / "nnUNetv2_predict_from_modelfolder"), "-i", str(tmp / "in"), "-o", str(tmp / "nn"),
                              "-m", str(args.model_dir), "-f", *args.folds.split(","), "--disable_tta", "-device", "cpu",
                              "-npp", "1", "-nps", "1"])
        reference = np.asarray(nib.load(tmp / "nn" / "case.nii.gz").dataobj)
        stem = args.image.name.replace(".nii.gz", "")
        sc = np.asarray(nib.load(tmp / "ours" / f"{stem}_sc_seg.nii.gz").dataobj)
        equal = np.array_equal(sc, np.isin(reference, [1, 2]).astype(sc.dtype))
    print(f"segkit segment --model-dir          {ours_time:7.2f} s  (peak RSS {peak_mb:.0f} MB)")
    print(f"nnUNetv2_predict_from_modelfolder  {theirs_time:7.2f} s")
    print(f"sc masks equal voxel for voxel: {equal}")


if __name__ == "__main__":
    main()
