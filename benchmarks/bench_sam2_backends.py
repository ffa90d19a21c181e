"""lpm_nnsam2's SAM 2.1 propagator per target slice: torch eager vs ONNX Runtime fp32 vs ORT int8.

SAM 2.1 Hiera tiny is built from sam2's own config at its real 1024 px (random weights, seed 0:
the checkpoint cannot be downloaded here; weights do not change the compute). Each backend
propagates the same support into the same held-out lumbar CT phantoms (upstream's interleaving,
two objects), in one process, one after the other; the image features are the only thing that
changes. Printed per backend: seconds per target slice, the ratio to eager, the mean IoU of its
masks with eager's per side (both empty counts 1), and the largest change of the predicted IoU.

int8 is onnxruntime's dynamic quantisation (weights int8, activations quantised per call) of the
checked fp32 export; it is measured here, not offered by segkit (see benchmarks/README.md).

    .venv/bin/python benchmarks/bench_sam2_backends.py [--phantoms 2] [--slices 3] [--skip-int8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

SAM2_TINY = "configs/sam2.1/sam2.1_hiera_t.yaml"
SIDES = {1: "right", 2: "left"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phantoms", type=int, default=2, help="held-out phantoms (seeds 900, 901, ...)")
    parser.add_argument("--slices", type=int, default=3, help="axial slices per phantom")
    parser.add_argument("--skip-int8", action="store_true")
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    support, targets = phantoms(args.phantoms, args.slices)
    with tempfile.TemporaryDirectory(prefix="segkit-sam2-bench-") as cache:
        runs = {"torch eager": propagate_all(propagator(None), support, targets)}
        features = onnx_features(Path(cache))
        runs["onnx fp32"] = propagate_all(propagator(features), support, targets)
        if not args.skip_int8:
            runs["onnx int8 (dynamic)"] = propagate_all(propagator(int8_features(features, Path(cache))), support, targets)
    report(runs, args)


def phantoms(n: int, slices: int):
    from segkit.io.image import Image
    from segkit.phantoms.lumbar import make_lumbar_phantom, single_slice_support
    from segkit.tasks.lpm_nnsam2.fewshot import prepare_support

    shape, spacing = (80, 64, slices), (1.5, 1.5, 4.0)
    sup = make_lumbar_phantom(0, shape=shape, spacing=spacing)
    mask = single_slice_support(sup.labels)
    middle = int(np.flatnonzero(mask.any(axis=(0, 1)))[0])
    support = prepare_support(Image(sup.ct, sup.affine, "sup.nii.gz"), Image(mask, sup.affine, "mask.nii.gz"), [middle])
    targets = []
    for seed in range(900, 900 + n):
        phantom = make_lumbar_phantom(seed, shape=shape, spacing=spacing)
        targets.append(Image(phantom.ct, phantom.affine, f"h{seed}.nii.gz"))
    return support, targets


_PREDICTOR = {}


def propagator(features):
    """One predictor (the same random weights for every backend), its image features swapped."""
    from segkit.tasks.lpm_nnsam2.sam2_propagator import Sam2Propagator, build_recording_predictor

    if "net" not in _PREDICTOR:
        _PREDICTOR["net"] = build_recording_predictor(SAM2_TINY, None, "cpu").eval()
    predictor = _PREDICTOR["net"]
    predictor.segkit_image_features = features
    return Sam2Propagator(predictor, "cpu")


def onnx_features(cache: Path):
    from segkit.models.encoders import Sam2OnnxEncoder

    predictor = propagator(None).predictor
    started = time.perf_counter()
    features = Sam2OnnxEncoder(predictor, "sam2.1_hiera_tiny_random", "0" * 64, cache, "cpu")
    print(f"export + check: {time.perf_counter() - started:.1f} s; max |onnx - torch| per output "
          f"{features.module.manifest['validation']['max_abs_diff']}")
    return features


def int8_features(fp32, cache: Path):
    import copy

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from segkit.runtime.onnx_backend import OnnxModule

    int8_path = cache / "image_features_int8.onnx"
    quantize_dynamic(str(fp32.onnx_path), str(int8_path), weight_type=QuantType.QInt8)
    features = copy.copy(fp32)
    features.module = OnnxModule(int8_path, "cpu")
    return features


def propagate_all(prop, support, targets) -> dict:
    from segkit.tasks.lpm_nnsam2.fewshot import pseudo_label

    labels, scores, seconds, slices = [], [], 0.0, 0
    for target in targets:
        started = time.perf_counter()
        result = pseudo_label(target, support, prop)
        seconds += time.perf_counter() - started
        slices += target.data.shape[2]
        labels.append(result.labels)
        scores.append(result.propagation.scores)
    return {"labels": labels, "scores": scores, "s_per_slice": seconds / slices}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def report(runs: dict, args) -> None:
    eager = runs["torch eager"]
    print(f"\nSAM 2.1 Hiera tiny, 1024 px, random weights; {args.phantoms} lumbar phantoms x {args.slices} slices")
    for name, run in runs.items():
        ious = {side: np.mean([iou(a == v, b == v) for a, b in zip(run["labels"], eager["labels"])])
                for v, side in SIDES.items()}
        score_change = max(float(np.abs(a - b).max()) for a, b in zip(run["scores"], eager["scores"]))
        print(f"{name:20s} {run['s_per_slice']:6.2f} s per target slice  {eager['s_per_slice'] / run['s_per_slice']:4.2f}x eager  "
              f"mask IoU with eager right {ious['right']:.4f} left {ious['left']:.4f}  "
              f"max |predicted IoU change| {score_change:.2e}")


if __name__ == "__main__":
    main()
