"""ais_ncct (AISCT-SAM) on head CT phantoms: the reduced CPU training proof with its ablation and a
HU-threshold baseline, and the per-volume costs of each stage.

    .venv/bin/python benchmarks/bench_ais_ncct.py proof [--train 24 --test 6 --epochs 40 --iterations 50 --learning-rate 3e-4] [--arm aisct_sam]
    .venv/bin/python benchmarks/bench_ais_ncct.py costs [--shape 512,512,40] [--inference]

proof: AISCT-SAM (embedded LiteMedSAM backbone, mirror channel + self-prompts) and the same network
without them (the paper's ablation) are trained with `segkit train -task ais_ncct` on the same
phantoms and seed, then scored on held-out phantoms (pooled lesion Dice and mean per case). The
trivial baseline: a brain-voxel HU threshold on the smoothed stripped CT, its cut-off chosen on the
training phantoms. costs: seconds for skull stripping, flip registration and one inference, and
peak memory (max RSS), on one phantom of --shape.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (48, 48, 8)
FOV = (200.0, 220.0, 48.0)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = int(pred.sum() + truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def threshold_baseline(train, test) -> dict:
    """Brain voxels whose 3x3x1-smoothed HU is below t (and above CSF): t chosen on the training cases."""
    from scipy import ndimage

    def predict(pre, cut):
        smooth = ndimage.uniform_filter(pre.stripped, size=(3, 3, 1))
        return pre.brain & (smooth < cut) & (smooth > 15.0)

    cuts = np.arange(16.0, 36.0, 0.5)
    scores = [np.mean([dice(predict(pre, c), lab > 0) for _, pre, lab in train]) for c in cuts]
    best = float(cuts[int(np.argmax(scores))])
    per_case = [dice(predict(pre, best), lab > 0) for _, pre, lab in test]
    return {"cut_hu": best, "train_dice": float(max(scores)), "test_dice_mean": float(np.mean(per_case))}


def score_model(package: Path, test) -> dict:
    """Held-out lesion Dice of a trained package, each case as `segment` computes it."""
    from segkit.tasks.ais_ncct.package import load_package
    from segkit.tasks.ais_ncct.train import held_out_masks

    model = load_package(package)
    per_case, overlap, total = [], 0, 0
    for predicted, (_, _, label) in zip(held_out_masks(model.net, test, model.card), test):
        truth = label > 0
        per_case.append(dice(predicted, truth))
        overlap += int((predicted & truth).sum())
        total += int(predicted.sum() + truth.sum())
    return {"test_dice_mean": float(np.mean(per_case)), "test_dice_pooled": 2.0 * overlap / max(total, 1),
            "per_case": [round(d, 3) for d in per_case], "validation_dice": model.card["training"]["validation_dice"]}


def cpu_seconds() -> float:
    """This process's CPU time and its finished children's (nnU-Net trains in a child process)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def proof(args) -> dict:
    from segkit import api
    from segkit.phantoms.head_ct import write_head_ct_dataset
    from segkit.tasks.ais_ncct.dataset import prepare_cases, read_dataset

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ais_proof_"))
    print(f"proof folder (phantoms, runs, models): {work}", file=sys.stderr, flush=True)
    write_head_ct_dataset(work / "train", range(args.train), shape=SHAPE, field_of_view_mm=FOV)
    write_head_ct_dataset(work / "test", range(1000, 1000 + args.test), shape=SHAPE, field_of_view_mm=FOV)
    test = prepare_cases(read_dataset(work / "test"), work / "cache")
    train = prepare_cases(read_dataset(work / "train"), work / "cache")
    results = {"sizes": {"train": args.train, "test": args.test, "shape": SHAPE, "fov_mm": FOV, "epochs": args.epochs,
                         "iterations": args.iterations, "val_iterations": args.val_iterations, "patch": [args.side, args.side, args.depth], "batch": args.batch,
                         "learning_rate": args.learning_rate},
               "threshold": threshold_baseline(train, test)}
    for arm, mirror in (("aisct_sam", True), ("no_mirror_no_prompts", False)):
        if args.arm not in ("both", arm):
            continue
        started, cpu = time.time(), cpu_seconds()
        api.train("ais_ncct", data=work / "train", output=work / arm, epochs=args.epochs,
                  iterations_per_epoch=args.iterations, val_iterations_per_epoch=args.val_iterations, patch_side=args.side, patch_depth=args.depth,
                  patches_per_batch=args.batch, learning_rate=args.learning_rate, spacing="native", mirror_channel=mirror, seed=0,
                  say=lambda text: print(text, file=sys.stderr, flush=True))
        results[arm] = {**score_model(work / arm / "model", test), "wall_s": round(time.time() - started, 1),
                        "cpu_s": round(cpu_seconds() - cpu, 1)}
        print(json.dumps({arm: results[arm]}), file=sys.stderr, flush=True)
    return results


def costs(args) -> dict:
    from segkit.phantoms.head_ct import make_head_phantom
    from segkit.tasks.ais_ncct.ct import apply_brain_mask, strip_skull
    from segkit.tasks.ais_ncct.mirror import flip_register

    shape = tuple(int(v) for v in args.shape.split(","))
    phantom = make_head_phantom(0, shape=shape, field_of_view_mm=(220.0, 220.0, 120.0))
    spacing = phantom.truth["spacing_mm"]
    out = {"shape": shape}
    started = time.perf_counter()
    brain = strip_skull(phantom.ct, spacing)
    out["skull_strip_s"] = round(time.perf_counter() - started, 2)
    stripped = apply_brain_mask(phantom.ct, brain)
    started = time.perf_counter()
    result = flip_register(stripped, spacing, brain=brain)
    out["registration_s"] = round(time.perf_counter() - started, 2)
    out["registration"] = {k: v for k, v in result.info.items() if k.startswith("residual") or k == "plane_tilt_deg"}
    out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.inference:
        out["inference"] = inference_cost(phantom, brain, stripped, result.mirror, spacing)
        out["max_rss_mb_with_inference"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def inference_cost(phantom, brain, stripped, mirror, spacing) -> dict:
    """One sliding-window pass at the upstream patch (20 x 256 x 256) and model spacing (0.4375 x
    0.4375 x 3 mm) with the embedded LiteMedSAM backbone: the network's cost does not depend on
    its weights, so its trained additions are left at their initialisation."""
    import torch

    from segkit.tasks.ais_ncct.inference import lesion_margin
    from segkit.tasks.ais_ncct.network import NetworkConfig, build_network
    from segkit.tasks.ais_ncct.pipeline import CasePreprocessed, model_channels, nonzero_box

    config = NetworkConfig()
    net = build_network(config).eval()
    stats = {"mean": 30.0, "std": 10.0, "percentile_00_5": 0.0, "percentile_99_5": 80.0}
    case = CasePreprocessed(phantom.ct, tuple(spacing), brain, stripped, mirror)
    started = time.perf_counter()
    channels = model_channels(case, nonzero_box(case), (0.4375, 0.4375, 3.0), [stats, stats])
    resample_s = time.perf_counter() - started
    windows = []

    def progress(done, total):
        windows[:] = [total]
        print(f"window {done}/{total} {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    started, before = time.perf_counter(), os.times()
    lesion_margin(net, channels, config.slice_size, config.depth, progress=progress)
    after = os.times()
    return {"model_grid": list(channels.shape[1:]), "windows": windows[0], "threads": torch.get_num_threads(),
            "huge_pages": os.environ.get("THP_MEM_ALLOC_ENABLE"),
            "resample_s": round(resample_s, 2), "network_s": round(time.perf_counter() - started, 1),
            "network_user_s": round(after.user - before.user, 1), "network_kernel_s": round(after.system - before.system, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("proof", "costs"))
    parser.add_argument("--train", type=int, default=8)
    parser.add_argument("--test", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--val-iterations", type=int, default=2, help="nnU-Net's validation batches per epoch")
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="AdamW peak learning rate (upstream 1e-4)")
    parser.add_argument("--shape", default="512,512,40")
    parser.add_argument("--inference", action="store_true", help="costs: also one sliding-window pass (slow on a CPU)")
    parser.add_argument("--work", help="proof: the folder for phantoms, runs and models (default: a new temporary one)")
    parser.add_argument("--arm", default="both", choices=("both", "aisct_sam", "no_mirror_no_prompts"),
                        help="train one arm only (two processes, one per core, run both arms in half the time)")
    args = parser.parse_args()
    print(json.dumps(proof(args) if args.what == "proof" else costs(args), indent=2))


if __name__ == "__main__":
    main()
