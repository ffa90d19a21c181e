"""The AutoSAM2 seed's table on tumour phantoms: slice percentage 0 / 0.3 / 0.6 with the LiteMedSAM
stage, WT/TC/ET Dice and seconds per volume, beside one-contrast threshold baselines.

    python benchmarks/bench_brats_autosam2.py --out /tmp/brats_bench [--n-train 10 --n-test 3 --shape 32]

Trains a reduced model (UNet width 0.5, patch = shape, --epochs x --iterations steps (default 8 x 10;
the CI proof, tests/test_brats_autosam2_proof.py, uses 16 phantoms and 16 x 10), learning rate 3e-3,
the UNet alone in training), then segments the
held-out phantoms in one process (model and LiteMedSAM loaded once) at each slice percentage with
the informative slice rule. Seconds per volume are wall-clock of predict_volume (UNet + SAM + blend)
and the process CPU seconds, on whatever machine runs it: record the machine with the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


def dice(a, b) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def scores(prediction, labels) -> dict:
    return {r: dice(np.isin(prediction, v), np.isin(labels, v)) for r, v in REGIONS.items()}


def train_model(out: Path, args) -> Path:
    from segkit.phantoms.brats import write_brats_dataset
    from segkit.tasks.brats_autosam2.train import TrainConfig, train

    write_brats_dataset(out / "train", range(args.n_train), (args.shape,) * 3)
    config = TrainConfig(data=out / "train", output=out / "run", sam="litemedsam", train_slice_percentage=0.0,
                         unet_width=0.5, patch_size=args.shape, learning_rate=3e-3, epochs=args.epochs,
                         iterations_per_epoch=args.iterations, device="cpu")
    started = time.perf_counter()
    result = train(config)
    print(f"trained in {time.perf_counter() - started:.0f} s; validation {result['best']}", flush=True)
    return result["model_dir"]


def thresholds(cases) -> dict:
    from segkit.tasks.brats_autosam2.inputs import normalise_contrast

    grid = np.arange(-1.0, 4.0, 0.05)
    found = {}
    for name, contrast, region in (("flair_wt", 3, "WT"), ("t1ce_tc", 1, "TC"), ("t1ce_et", 1, "ET")):
        pairs = [(normalise_contrast(p.images[contrast]), np.isin(p.labels, REGIONS[region])) for p in cases]
        found[name] = float(grid[int(np.argmax([np.mean([dice(z > t, m) for z, m in pairs]) for t in grid]))])
    return found


def run(args) -> dict:
    from segkit.phantoms.brats import make_tumour_phantom
    from segkit.tasks.brats_autosam2.hybrid import HybridSettings, predict_volume
    from segkit.tasks.brats_autosam2.inputs import normalise_case, normalise_contrast
    from segkit.tasks.brats_autosam2.package import load_package
    from segkit.tasks.brats_autosam2.sam_stage import build_sam_stage

    out = Path(args.out)
    model_dir = train_model(out, args)
    model, info = load_package(model_dir)
    model.attach_sam(build_sam_stage("litemedsam"))
    shape = (args.shape,) * 3
    tuned = thresholds([make_tumour_phantom(s, shape) for s in range(args.n_train)])
    table = {p: {"dice": [], "seconds": [], "cpu_seconds": [], "slices": []} for p in args.percentages}
    baseline = {"flair_wt": [], "t1ce_tc": [], "t1ce_et": []}
    for seed in range(100, 100 + args.n_test):
        case = make_tumour_phantom(seed, shape)
        volume = normalise_case(case.images)
        for percentage in args.percentages:
            wall, cpu = time.perf_counter(), time.process_time()
            labels, output = predict_volume(model, volume, HybridSettings(slice_percentage=percentage))
            row = table[percentage]
            row["seconds"].append(time.perf_counter() - wall)
            row["cpu_seconds"].append(time.process_time() - cpu)
            row["dice"].append(scores(labels, case.labels))
            row["slices"].append(len(output.refined))
        flair, t1ce = normalise_contrast(case.images[3]), normalise_contrast(case.images[1])
        baseline["flair_wt"].append(dice(flair > tuned["flair_wt"], np.isin(case.labels, REGIONS["WT"])))
        baseline["t1ce_tc"].append(dice(t1ce > tuned["t1ce_tc"], np.isin(case.labels, REGIONS["TC"])))
        baseline["t1ce_et"].append(dice(t1ce > tuned["t1ce_et"], np.isin(case.labels, REGIONS["ET"])))
        print(f"case {seed} done", flush=True)
    return {"model_sha256": info.sha256, "thresholds": tuned, "table": table,
            "baseline_mean": {k: float(np.mean(v)) for k, v in baseline.items()}}


def markdown(result: dict) -> str:
    lines = ["| slice % | Dice WT | Dice TC | Dice ET | SAM slices / volume | s / volume (wall) | CPU s / volume |",
             "|---|---|---|---|---|---|---|"]
    for percentage, row in result["table"].items():
        mean = {r: np.mean([d[r] for d in row["dice"]]) for r in REGIONS}
        name = "0 (UNet only)" if percentage == 0 else f"{percentage:g}"
        lines.append(f"| {name} | {mean['WT']:.3f} | {mean['TC']:.3f} | {mean['ET']:.3f} | {np.mean(row['slices']):.1f} | "
                     f"{np.mean(row['seconds']):.1f} | {np.mean(row['cpu_seconds']):.1f} |")
    b = result["baseline_mean"]
    lines.append(f"| FLAIR threshold (WT) / T1ce threshold (TC, ET) | {b['flair_wt']:.3f} | {b['t1ce_tc']:.3f} | "
                 f"{b['t1ce_et']:.3f} | - | - | - |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--n-train", type=int, default=10)
    parser.add_argument("--n-test", type=int, default=3)
    parser.add_argument("--shape", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--percentages", type=lambda text: [float(p) for p in text.split(",")], default=[0.0, 0.3, 0.6])
    args = parser.parse_args()
    result = run(args)
    Path(args.out, "result.json").write_text(json.dumps(result, indent=1, default=float))
    print(markdown(result))


if __name__ == "__main__":
    main()
