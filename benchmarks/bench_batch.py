"""Many cases through one `segkit segment` call (the model loads once) vs one process per case.

    .venv/bin/python benchmarks/bench_batch.py [--medsam-cases 20] [--nnunet-cases 5]

medsam: small crops of nilearn's MNI152 template (64x64x6 voxels, each from another place in the
brain), one 3-slice box each, LiteMedSAM's default backend (ONNX Runtime on the CPU).
nnU-Net: a tiny 3D nnU-Net v2 model with seeded random weights (tests/golden/fixtures.py; timing
only, so untrained weights do the same work), 5 cases of 48x48x32.
Both sides write the same masks (checked); the ratio is separate processes / one call.
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

ROOT = Path(__file__).resolve().parents[1]
SEGKIT = [str(Path(sys.executable).parent / "segkit")]
CROP = (64, 64, 6)


def run(args: list, env=None) -> float:
    started = time.perf_counter()
    done = subprocess.run([*SEGKIT, *map(str, args)], capture_output=True, encoding="utf-8", env=env)
    if done.returncode != 0:
        raise SystemExit(f"segkit {' '.join(map(str, args))} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def medsam_cases(folder: Path, n: int) -> list[Path]:
    from nilearn.datasets import MNI152_FILE_PATH

    image = nib.load(MNI152_FILE_PATH)
    data = np.asarray(image.dataobj, dtype=np.float32)
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        corner = [int(rng.integers(40, size - 40 - c)) for size, c in zip(data.shape, CROP)]
        crop = data[tuple(slice(c, c + s) for c, s in zip(corner, CROP))]
        affine = image.affine.copy()
        affine[:3, 3] += affine[:3, :3] @ np.array(corner, dtype=float)
        paths.append(folder / f"case{i:02d}.nii.gz")
        nib.save(nib.Nifti1Image(crop, affine), str(paths[-1]))
    return paths


def nnunet_cases(folder: Path, n: int) -> tuple[Path, list[Path]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from golden.fixtures import build_nnunet_model, write_cord_image

    model, _ = build_nnunet_model(folder / "model")
    return model, [write_cord_image(folder / f"cord{i}.nii.gz", "LAS", seed=100 + i) for i in range(n)]


def compare(name: str, paths: list[Path], options: list, out: Path) -> tuple[float, float]:
    one = run(["segment", *[a for p in paths for a in ("-i", p)], *options, "-o", f"{out}/one/"])
    separate = sum(run(["segment", "-i", p, *options, "-o", f"{out}/each/"]) for p in paths)
    for mask in sorted((out / "one").glob("*.nii.gz")):
        twin = out / "each" / mask.name
        if not np.array_equal(np.asarray(nib.load(mask).dataobj), np.asarray(nib.load(twin).dataobj)):
            raise SystemExit(f"{name}: {mask.name} differs between one call and separate processes")
    print(f"{name}: {len(paths)} cases, one call {one:.1f} s, {len(paths)} processes {separate:.1f} s, "
          f"ratio {separate / one:.2f}x ({one / len(paths):.2f} vs {separate / len(paths):.2f} s per case)", flush=True)
    return one, separate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--medsam-cases", type=int, default=20)
    parser.add_argument("--nnunet-cases", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        run(["segment", "-task", "medsam", "-i", medsam_cases(tmp / "warm", 1)[0], "--box", "20,20,2,44,44,4",
             "-o", f"{tmp}/warm/out/"])  # installs the weights and caches the ONNX export for both sides
        paths = medsam_cases(tmp / "medsam", args.medsam_cases)
        compare("medsam", paths, ["-task", "medsam", "--box", "20,20,2,44,44,4"], tmp / "medsam")
        model, cords = nnunet_cases(tmp / "nnunet", args.nnunet_cases)
        compare("nnU-Net", cords, ["--model", model, "--device", "cpu"], tmp / "nnunet")


if __name__ == "__main__":
    main()
