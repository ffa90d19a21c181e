"""ais_ncct (AISCT-SAM) on head CT phantoms: the reduced CPU training proof with its ablation and a
HU-threshold baseline, and the per-volume costs of each stage.

    .venv/bin/python benchmarks/bench_ais_ncct.py proof [--train 24 --test 6 --epochs 40 --iterations 50 --learning-rate 3e-4] [--arm aisct_sam]
    .venv/bin/python benchmarks/bench_ais_ncct.py costs [--shape 512,512,40] [--fov 220,220,120] [--inference | --command]

proof: AISCT-SAM (embedded LiteMedSAM backbone, mirror channel + self-prompts) and the same network
without them (the paper's ablation) are trained with `segkit train -task ais_ncct` on the same
phantoms and seed, then scored on held-out phantoms (pooled lesion Dice and mean per case). The
trivial baseline: a brain-voxel HU threshold on the smoothed stripped CT, its cut-off chosen on the
training phantoms. costs: seconds for skull stripping with flip registration and (--inference) the
whole slab-wise inference to the uint8 mask, and the peak memory (max RSS) of the child process that
does them, on one int16 phantom of --shape and --fov; with --command, the max RSS of the whole
`segkit segment -task ais_ncct` process instead.
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
        smooth = ndimage.uniform_filter(pre.whole(pre.stripped), size=(3, 3, 1))
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
    """Stripping and registration (and with --inference the whole segment computation) on one phantom
    of --shape, run in a child process so its peak memory (ru_maxrss) is the task's alone: the
    phantom is made here and handed over as an int16 NIfTI, as a CT arrives."""
    import subprocess

    shape = tuple(int(v) for v in args.shape.split(","))
    fov = tuple(float(v) for v in args.fov.split(","))
    work = Path(tempfile.mkdtemp(prefix="ais_costs_"))
    path = write_costs_phantom(work / "ct.nii", shape, fov)
    if args.command:
        command, env = segment_command(work, path), {**os.environ, "SEGKIT_HOME": str(work / "home")}
    else:
        command, env = [sys.executable, __file__, "costs-child", str(path)] + (["--inference"] if args.inference else []), None
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.PIPE, encoding="utf-8", check=True, env=env)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    path.unlink()
    measured = {"command": " ".join(command[1:])} if args.command else json.loads(result.stdout)
    return {"shape": shape, "fov_mm": fov, **measured, "wall_s": round(time.perf_counter() - started, 1),
            "max_rss_mb": round(child.ru_maxrss / 1024, 1), "cpu_user_s": round(child.ru_utime, 1),
            "cpu_kernel_s": round(child.ru_stime, 1)}


def segment_command(work: Path, ct: Path) -> list[str]:
    """The whole `segkit segment -task ais_ncct` on the phantom, with a package of the upstream network
    (costs_network's, its trained additions at their initialisation) written by the package writer."""
    from segkit.tasks.ais_ncct.package import write_package

    net, card = costs_network()
    card = {**card, "backbone": {"name": "litemedsam", "pretrained": True}, "training": {"validation_dice": None}}
    package = write_package(work / "model", net, card)
    segkit = str(Path(sys.executable).with_name("segkit"))
    return [segkit, "segment", "-task", "ais_ncct", "--model", str(package), "-i", str(ct), "-o", f"{work / 'out'}/"]


def write_costs_phantom(path: Path, shape, fov) -> Path:
    """An int16 head CT phantom of `shape`. Above 80 slices it is drawn at 80 and each slice repeated
    (the phantom's generator holds float grids of the whole volume): the same size, dtype and head,
    with the slice spacing of --shape."""
    import nibabel as nib

    from segkit.phantoms.head_ct import make_head_phantom

    drawn = shape if shape[2] <= 80 else (shape[0], shape[1], 80)
    phantom = make_head_phantom(0, shape=drawn, field_of_view_mm=fov)
    ct = np.round(phantom.ct).astype(np.int16)
    del phantom
    if drawn != shape:
        ct = np.repeat(ct, int(np.ceil(shape[2] / drawn[2])), axis=2)[:, :, :shape[2]]
    spacing = np.asarray(fov) / np.asarray(shape)
    affine = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(ct, affine), str(path))
    return path


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def costs_child(path: str, inference: bool) -> dict:
    """What `segment -task ais_ncct` computes, in its order: read and check the CT (int16 where lossless),
    the network loaded, brain mask, stripped CT and registered mirror, then (--inference) the
    slab-wise sliding window at the upstream patch and model spacing to the uint8 mask; the peak so
    far after each stage."""
    from segkit.tasks.ais_ncct.ct import compact_hu, read_ct
    from segkit.tasks.ais_ncct.pipeline import preprocess_case

    out, clock = {}, time.perf_counter()
    image = read_ct(path)
    hu, spacing = compact_hu(image.data), tuple(float(v) for v in image.affine.diagonal()[:3])
    image.data = hu
    out["read"] = {"s": round(time.perf_counter() - clock, 1), "dtype": str(hu.dtype), "peak_mb": peak_rss_mb()}
    net, card = costs_network() if inference else (None, None)
    out["network_built_peak_mb"] = peak_rss_mb()
    clock = time.perf_counter()
    case = preprocess_case(hu, spacing, cache_dir=None)
    out["strip_and_register"] = {"s": round(time.perf_counter() - clock, 1), "peak_mb": peak_rss_mb(),
                                 "residual_hu": round(case.registration["residual_hu"], 2)}
    if inference:
        out["inference"] = costs_inference(net, card, case)
    return out


def costs_network():
    """AISCT-SAM at the upstream patch (20 x 256 x 256) and model spacing (0.4375 x 0.4375 x 3 mm) with
    the embedded LiteMedSAM backbone: its cost does not depend on its weights, so its trained
    additions are left at their initialisation."""
    from segkit.tasks.ais_ncct.network import NetworkConfig, build_network

    config = NetworkConfig()
    stats = {"mean": 30.0, "std": 10.0, "percentile_00_5": 0.0, "percentile_99_5": 80.0}
    card = {"network": config.to_dict(), "spacing_mm": [0.4375, 0.4375, 3.0], "normalisation": [stats, stats]}
    return build_network(config).eval(), card


def costs_inference(net, card, case) -> dict:
    import torch

    from segkit.tasks.ais_ncct.inference import lesion_mask
    from segkit.tasks.ais_ncct.pipeline import ModelChannels

    windows, started, before = [], time.perf_counter(), os.times()

    def progress(done, total):
        windows[:] = [total]
        print(f"window {done}/{total} {time.perf_counter() - started:.0f} s, peak {peak_rss_mb():.0f} MB",
              file=sys.stderr, flush=True)

    mask = lesion_mask(net, case, card, 0.5, 1, progress=progress)
    after = os.times()
    grid = ModelChannels(case, card["spacing_mm"], card["normalisation"])
    return {"model_grid": list(grid.shape), "resampling": grid.resampling.rule, "windows": windows[0],
            "threads": torch.get_num_threads(), "mask_dtype": str(mask.dtype), "s": round(time.perf_counter() - started, 1),
            "user_s": round(after.user - before.user, 1), "kernel_s": round(after.system - before.system, 1),
            "peak_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("proof", "costs", "costs-child"))
    parser.add_argument("path", nargs="?", help="costs-child: the CT to measure (the costs command passes it)")
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
    parser.add_argument("--fov", default="220,220,120", help="costs: the phantom's field of view, mm (R-L,A-P,S-I)")
    parser.add_argument("--inference", action="store_true", help="costs: also one sliding-window pass (slow on a CPU)")
    parser.add_argument("--command", action="store_true",
                        help="costs: the whole `segkit segment -task ais_ncct` command instead (reading to the written mask)")
    parser.add_argument("--work", help="proof: the folder for phantoms, runs and models (default: a new temporary one)")
    parser.add_argument("--arm", default="both", choices=("both", "aisct_sam", "no_mirror_no_prompts"),
                        help="train one arm only (two processes, one per core, run both arms in half the time)")
    args = parser.parse_args()
    if args.what == "costs-child":
        print(json.dumps(costs_child(args.path, args.inference)))
        return
    print(json.dumps(proof(args) if args.what == "proof" else costs(args), indent=2))


if __name__ == "__main__":
    main()
