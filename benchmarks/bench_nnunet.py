"""segkit segment --model-dir vs nnUNetv2_predict_from_modelfolder on the same model and case.

Usage: python benchmarks/bench_nnunet.py MODEL_DIR IMAGE.nii.gz [--folds 0] [--backends torch,onnx]
Prints each wall time (each a fresh process, as a user runs them; segkit once per --backend, the
ONNX export made by an untimed first run), segkit's ratio to nnunetv2, its max RSS, and the cord
mask's Dice and differing voxels against nnunetv2's label map. IMAGE must be in the model's orientation (LAS for
SCIseg) so that neither side reorients.
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--backends", default="torch,onnx", help="segkit --backend values to time, comma-separated")
    parser.add_argument("--home", type=Path, help="SEGKIT_HOME (where the ONNX export is cached; default: a fresh one)")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "SEGKIT_HOME": str(args.home or tmp / "home")}
        reference = nnunetv2_labels(bin_dir, args, tmp)
        stem = args.image.name.replace(".nii.gz", "")
        for backend in args.backends.split(","):
            out = tmp / backend
            command = [str(bin_dir / "segkit"), "segment", "-i", str(args.image), "--model-dir", str(args.model_dir),
                       "--folds", args.folds, "--device", "cpu", "--backend", backend, "-o", str(out) + "/"]
            if backend != "torch":
                _timed(command, env)  # the first run exports and checks the network; the timed one reuses it
                shutil.rmtree(out)
            seconds, peak_mib = _timed_with_rss(command, env)
            sc = np.asarray(nib.load(out / f"{stem}_sc_seg.nii.gz").dataobj) > 0
            truth = np.isin(reference["labels"], [1, 2])
            print(f"segkit --backend {backend:5s} {seconds:7.2f} s  {reference['seconds'] / seconds:4.2f}x nnunetv2  "
                  f"peak RSS {peak_mib:5.0f} MiB  sc Dice to nnunetv2 {dice(truth, sc):.5f}  "
                  f"voxels differing {int((truth != sc).sum())}")
        print(f"nnUNetv2_predict_from_modelfolder {reference['seconds']:7.2f} s")


def nnunetv2_labels(bin_dir: Path, args, tmp: Path) -> dict:
    (tmp / "in").mkdir()
    shutil.copy(args.image, tmp / "in" / "case_0000.nii.gz")
    seconds = _timed([str(bin_dir / "nnUNetv2_predict_from_modelfolder"), "-i", str(tmp / "in"), "-o", str(tmp / "nn"),
                      "-m", str(args.model_dir), "-f", *args.folds.split(","), "--disable_tta", "-device", "cpu",
                      "-npp", "1", "-nps", "1"])
    return {"seconds": seconds, "labels": np.asarray(nib.load(tmp / "nn" / "case.nii.gz").dataobj)}


def _timed_with_rss(command: list[str], env) -> tuple[float, float]:
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / float(total)


if __name__ == "__main__":
    main()
