"""cc_fodf proof run: train SC2S-Net and the CNN-only baseline the same way on CPU with reduced sizes,
then segment held-out phantoms from raw DWI (`segkit segment`, peaks computed by dipy) and report
Dice, seconds and peak memory per subject.

    .venv/bin/python benchmarks/bench_cc_train.py [--work DIR] [--epochs N] [--batches N]

Each `segkit segment` runs in its own process so that its peak RSS (ru_maxrss of the child) is
the per-subject peak memory; inference seconds come from the sidecar (model part only) and the
wall time of the whole command (peaks included).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEGKIT = [str(Path(sys.executable).with_name("segkit"))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/segkit_cc_bench"))
    parser.add_argument("--train-subjects", type=int, default=6)
    parser.add_argument("--test-subjects", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--slice-size", type=int, default=48)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--sam-grid", type=int, default=14)
    parser.add_argument("--architectures", default="sc2snet,unet")
    args = parser.parse_args()

    from segkit.phantoms.cc_dwi import make_cc_phantom, write_cc_dataset, write_cc_subject

    data = args.work / "data"
    if not (data / "dataset.json").exists():
        write_cc_dataset(data, args.train_subjects, first_seed=0)
    tests = []
    for k in range(args.test_subjects):
        folder = args.work / "test"
        files = folder / f"sub-{100 + k}_dwi.nii.gz"
        if not files.exists():
            write_cc_subject(make_cc_phantom(100 + k), folder, f"sub-{100 + k}")
        tests.append(f"sub-{100 + k}")

    results = {}
    for architecture in args.architectures.split(","):
        out = args.work / f"train_{architecture}"
        started = time.perf_counter()
        if not (out / "model" / "model_card.json").exists():
            cmd = SEGKIT + ["train", "-task", "cc_fodf", "--data", str(data), "-o", str(out),
                            "--architecture", architecture, "--slice-size", str(args.slice_size),
                            "--width", str(args.width), "--sam-grid", str(args.sam_grid),
                            "--epochs", str(args.epochs), "--iterations-per-epoch", str(args.batches),
                            "--batch-size", str(args.batch_size), "--device", "cpu"]
            subprocess.run(cmd, check=True, cwd=REPO)
        train_s = time.perf_counter() - started
        card = json.loads((out / "model" / "model_card.json").read_text())
        per_subject = [segment_one(args.work, name, out / "model", architecture) for name in tests]
        results[architecture] = {
            "train_wall_s": round(train_s, 1),
            "best_epoch": card["training"]["best_epoch"],
            "val_dice": card["validation"]["dice_mean"],
            "test": per_subject,
            "test_dice_mean": float(np.mean([s["dice"] for s in per_subject])),
        }
        print(json.dumps({architecture: results[architecture]}, indent=1), flush=True)
    (args.work / "results.json").write_text(json.dumps(results, indent=2))


def segment_one(work: Path, name: str, model: Path, architecture: str) -> dict:
    from segkit.io import load_label_map

    folder = work / "test"
    out = work / f"pred_{architecture}"
    out.mkdir(exist_ok=True)
    cmd = SEGKIT + ["segment", "-i", str(folder / f"{name}_dwi.nii.gz"), "-task", "cc_fodf",
                    "--bval", str(folder / f"{name}_dwi.bval"), "--bvec", str(folder / f"{name}_dwi.bvec"),
                    "--model", str(model), "--device", "cpu", "-o", str(out) + "/"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    wall = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    sidecar = json.loads((out / f"{name}_dwi_cc_seg.json").read_text())
    pred = load_label_map(out / f"{name}_dwi_cc_seg.nii.gz").data > 0
    truth = load_label_map(folder / f"{name}_cc.nii.gz").data > 0
    from segkit.metrics.overlap import dice as overlap_dice  # segkit eval's definition

    dice = overlap_dice(truth, pred)
    return {
        "subject": name,
        "dice": round(dice, 4),
        "segment_wall_s": round(wall, 1),
        "peaks_s": sidecar.get("peaks_seconds"),
        "inference_s": sidecar["inference"]["seconds"],
        # ru_maxrss of children is a running max over all children so far: exact when it grows
        "peak_rss_MiB_max_so_far": round(max(before, peak_kb) / 1024, 1),
    }


if __name__ == "__main__":
    main()
