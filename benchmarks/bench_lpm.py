"""lpm_nnsam2 benchmark and proof run on synthetic lumbar CT phantoms (CPU):

1. seconds per target slice of the two propagators, timed in the same run on the same held-out
   phantoms: LiteMedSAM box propagation (real embedded weights) and SAM 2.1 Hiera tiny at its real
   1024 px size (random weights: the checkpoint cannot be downloaded here, and weights do not
   change the compute); the ratio is printed;
2. `segkit train -task lpm_nnsam2` (pseudo-labels -> nnU-Net rounds), with the wall time of each
   round read from the command's own progress lines;
3. the trained model (`segkit segment --model`) against the LiteMedSAM pseudo-labels on the same
   held-out phantoms: Dice per side against the phantoms' true labels, and the issue's acceptance
   rule (model >= pseudo-labels - 0.05).

    .venv/bin/python benchmarks/bench_lpm.py [--work DIR] [--rounds N] [--epochs N] [--iterations N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SEGKIT = str(Path(sys.executable).with_name("segkit"))
SIDES = {1: "lpm_right", 2: "lpm_left"}
SAM2_TINY = "configs/sam2.1/sam2.1_hiera_t.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/segkit_lpm_bench"))
    parser.add_argument("--shape", default="80,64,6", help="phantom array shape (RAS, axial slices last); the test size")
    parser.add_argument("--spacing", default="1.5,1.5,4", help="phantom voxel size in mm")
    parser.add_argument("--train-images", type=int, default=8)
    parser.add_argument("--held-out", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=15)  # as tests/test_lpm_train.py
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--sam2-slices", type=int, default=2, help="target slices timed with SAM2-tiny (0: skip)")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))
    data = make_data(args.work, shape, spacing, args.train_images, args.held_out)
    pseudo = time_litemedsam(data)
    sam2 = time_sam2_tiny(data, args.sam2_slices) if args.sam2_slices else None
    rounds = train(args, data)
    model = segment_with_model(args.work, data)
    report(args, shape, spacing, data, pseudo, sam2, rounds, model)


def make_data(work: Path, shape, spacing, n_train: int, n_held_out: int) -> dict:
    import nibabel as nib

    from segkit.phantoms.lumbar import make_lumbar_phantom, save_lumbar_phantom, single_slice_support

    work.mkdir(parents=True, exist_ok=True)
    support = make_lumbar_phantom(0, shape=shape, spacing=spacing)
    paths = save_lumbar_phantom(support, work / "support", "sup")
    mask = work / "support" / "sup_mask.nii.gz"
    nib.save(nib.Nifti1Image(single_slice_support(support.labels), support.affine), str(mask))
    images = work / "images"
    images.mkdir(exist_ok=True)
    for seed in range(100, 100 + n_train):
        phantom = make_lumbar_phantom(seed, shape=shape, spacing=spacing)
        nib.save(nib.Nifti1Image(phantom.ct, phantom.affine), str(images / f"train_{seed}.nii.gz"))
    held_out = {}
    for seed in range(900, 900 + n_held_out):
        phantom = make_lumbar_phantom(seed, shape=shape, spacing=spacing)
        held_out[seed] = (save_lumbar_phantom(phantom, work / "held_out", f"h{seed}")["ct"], phantom.labels)
    return {"support": paths["ct"], "mask": mask, "images": images, "held_out": held_out}


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """segkit eval's voxel Dice (both empty -> 1)."""
    from segkit.metrics.overlap import overlap_metrics

    return overlap_metrics(truth, pred, voxel_volume_mm3=1.0)["dice"]


def time_litemedsam(data: dict) -> dict:
    """Pseudo-labels of the held-out phantoms with the embedded weights; seconds per target slice."""
    from segkit.tasks.lpm_nnsam2.inputs import load_targets
    from segkit.registry.schema import load_registry
    from segkit.tasks.lpm_nnsam2.fewshot import prepare_support, pseudo_label
    from segkit.tasks.lpm_nnsam2.inputs import load_support
    from segkit.tasks.lpm_nnsam2.task import make_propagator

    propagator = make_propagator("litemedsam", load_registry().get("lpm_nnsam2"), "cpu")
    image, mask, seeds = load_support(data["support"], data["mask"])
    support = prepare_support(image, mask, seeds)
    pseudo_label(load_targets([data["support"]])[0], support, propagator)  # warm-up: ONNX session, first calls
    seconds, slices, scores = 0.0, 0, {side: [] for side in SIDES}
    for path, truth in data["held_out"].values():
        start = time.perf_counter()
        result = pseudo_label(load_targets([path])[0], support, propagator)
        seconds += time.perf_counter() - start
        slices += truth.shape[2]
        for value in SIDES:
            scores[value].append(dice(result.labels == value, truth == value))
    return {"s_per_slice": seconds / slices, "dice": scores}


def time_sam2_tiny(data: dict, n_slices: int) -> dict:
    """SAM 2.1 Hiera tiny (sam2's own config, 1024 px, random weights) on the first held-out phantom."""
    import torch

    from segkit.tasks.lpm_nnsam2.inputs import load_targets
    from segkit.tasks.lpm_nnsam2.fewshot import prepare_support, pseudo_label
    from segkit.tasks.lpm_nnsam2.inputs import load_support
    from segkit.tasks.lpm_nnsam2.sam2_propagator import Sam2Propagator, build_recording_predictor
    from segkit.tasks.lpm_nnsam2.slices import ras_volume

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    propagator = Sam2Propagator(build_recording_predictor(SAM2_TINY, None, "cpu"), "cpu")
    image, mask, seeds = load_support(data["support"], data["mask"])
    support = prepare_support(image, mask, seeds)
    path, _ = next(iter(data["held_out"].values()))
    target = _first_slices(load_targets([path])[0], n_slices)
    start = time.perf_counter()
    pseudo_label(target, support, propagator)
    seconds = time.perf_counter() - start
    frames = 2 * ras_volume(target)[0].shape[2]  # upstream's interleaving: a support frame before each target frame
    return {"s_per_slice": seconds / n_slices, "frames": frames}


def _first_slices(image, n: int):
    """The image cut to its first n axial slices (a shorter 'video': the per-slice cost is the same)."""
    from dataclasses import replace

    return replace(image, data=np.asarray(image.data)[:, :, :n], original_shape=None)


def train(args, data: dict) -> list[dict]:
    """`segkit train -task lpm_nnsam2`; each round's wall time from its 'round N:' progress lines."""
    command = [SEGKIT, "train", "-task", "lpm_nnsam2", "--images", str(data["images"]), "--support", str(data["support"]),
               "--support-mask", str(data["mask"]), "--rounds", str(args.rounds), "--epochs", str(args.epochs),
               "--iterations-per-epoch", str(args.iterations), "--val-iterations-per-epoch", "2", "--seed", "0", "--propagator",
               "litemedsam", "--device", "cpu", "-o", str(args.work / "package")]
    marks, start = [], time.perf_counter()
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as child:
        for line in child.stderr:
            sys.stderr.write(line)
            marks.append((time.perf_counter() - start, line.strip()))
    if child.returncode != 0:
        raise SystemExit(f"segkit train failed with exit code {child.returncode}")
    starts = [t for t, line in marks if line.startswith("round ") and ": nnU-Net on" in line]
    ends = [(t, line) for t, line in marks if line.startswith("round ") and "mean Dice vs previous" in line]
    rows = [{"step": "pseudo-labels + dataset", "seconds": starts[0] if starts else float("nan"), "log": ""}]
    for index, (begin, (end, line)) in enumerate(zip(starts, ends), start=1):
        rows.append({"step": f"round {index}", "seconds": end - begin, "log": line})
    return rows


def segment_with_model(work: Path, data: dict) -> dict:
    import nibabel as nib

    out = work / "model_out"
    paths = [str(p) for p, _ in data["held_out"].values()]
    command = [SEGKIT, "segment", "-task", "lpm_nnsam2", "--model", str(work / "package"), "--device", "cpu", "-o", f"{out}/"]
    for path in paths:
        command += ["-i", path]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    scores = {side: [] for side in SIDES}
    for path, truth in data["held_out"].values():
        stem = Path(path).name.removesuffix(".nii.gz")
        for value, name in SIDES.items():
            mask = np.asarray(nib.load(out / f"{stem}_{name}_seg.nii.gz").dataobj) > 0
            scores[value].append(dice(mask, truth == value))
    return {"dice": scores}


def report(args, shape, spacing, data, pseudo, sam2, rounds, model) -> None:
    print(f"\nlpm_nnsam2 on {len(data['held_out'])} held-out CT phantoms {shape} at {spacing} mm; "
          f"{args.train_images} training images, {args.rounds} rounds x {args.epochs} epochs x {args.iterations} iterations")
    print(f"LiteMedSAM propagation: {pseudo['s_per_slice']:.2f} s per target slice")
    if sam2:
        print(f"SAM2.1 Hiera tiny (1024 px): {sam2['s_per_slice']:.2f} s per target slice "
              f"({sam2['s_per_slice'] / pseudo['s_per_slice']:.1f}x LiteMedSAM)")
    for row in rounds:
        print(f"  {row['step']}: {row['seconds']:.0f} s  {row['log']}")
    ok = True
    for value, name in SIDES.items():
        p, m = float(np.mean(pseudo["dice"][value])), float(np.mean(model["dice"][value]))
        ok &= m >= p - 0.05
        print(f"{name}: Dice pseudo-labels {p:.3f}  trained model {m:.3f}  (per case {np.round(model['dice'][value], 3).tolist()})")
    print(f"acceptance (model >= pseudo-labels - 0.05 on both sides): {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
