"""Peak memory of whole `segkit` commands on a 512x512x800 int16 CT (issue 17, item 4).

Writes a CT phantom (body ellipse, an organ, noise; 0.8 x 0.8 x 1.0 mm) as .nii.gz, then runs each
command as its own process and reports its max RSS (os.wait4's ru_maxrss, what /usr/bin/time -v
prints), wall and CPU seconds:

- `segkit segment -task medsam` with a 3D box over 20 slices (the issue's case) and a 2D box;
- `segkit quantify -m MASK -i CT --volume --intensity` on the mask medsam wrote.

`segkit eval` on 512x512x800 pairs: benchmarks/bench_eval_hard.py --memory.

    .venv/bin/python benchmarks/bench_memory.py [--work DIR] [--keep]
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

import numpy as np

SHAPE = (512, 512, 800)
SPACING = (0.8, 0.8, 1.0)
BOX_3D = "180,180,390,310,236,409"  # 20 slices around the middle
BOX_2D = ("180,180,310,236", "400")  # box, slice


def write_ct(path: Path) -> None:
    """int16 HU: air, a body ellipse (40 HU), an organ (120 HU), +-10 HU noise; written slab by slab."""
    import nibabel as nib

    x, y = np.meshgrid(np.arange(SHAPE[0]) - SHAPE[0] // 2, np.arange(SHAPE[1]) - SHAPE[1] // 2, indexing="ij")
    plane = np.where((x / 200.0) ** 2 + (y / 150.0) ** 2 <= 1, 40, -1000).astype(np.int16)
    plane[((x - 60) / 50.0) ** 2 + ((y + 20) / 40.0) ** 2 <= 1] = 120
    rng = np.random.default_rng(0)
    ct = np.empty(SHAPE, dtype=np.int16)
    for k in range(SHAPE[2]):
        ct[:, :, k] = plane + rng.integers(-10, 10, size=plane.shape, dtype=np.int16)
    image = nib.Nifti1Image(ct, np.diag([*SPACING, 1.0]))
    image.set_data_dtype(np.int16)
    nib.save(image, str(path))


def measured(argv: list[str]) -> dict:
    """Run argv; its max RSS, wall and CPU seconds (the process and its children)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({code}): {stderr[-500:]}")
    return {"max_rss_mib": usage.ru_maxrss / 1024, "wall_s": time.perf_counter() - started,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="folder for the CT and outputs (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the folder")
    parser.add_argument("--nnunet-model", type=Path, help="also `segment --model-dir` with this trained nnU-Net folder "
                        "(one channel), once per backend")
    parser.add_argument("--nnunet-backends", default="onnx,torch", help="backends to run the nnU-Net model with")
    parser.add_argument("--only-nnunet", action="store_true", help="skip medsam and quantify")
    args = parser.parse_args()
    segkit = str(Path(sys.executable).with_name("segkit"))
    work = args.work or Path(tempfile.mkdtemp(prefix="segkit-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ct = work / "ct.nii.gz"
        if not ct.exists():
            write_ct(ct)
        runs = {
            "medsam, 3D box over 20 slices": [segkit, "segment", "-task", "medsam", "-i", str(ct), "--box", BOX_3D,
                                              "-o", f"{work / 'box3d'}/"],
            "medsam, 2D box on one slice": [segkit, "segment", "-task", "medsam", "-i", str(ct), "--box", BOX_2D[0],
                                            "--slice", BOX_2D[1], "--axis", "2", "-o", f"{work / 'box2d'}/"],
            "quantify --volume --intensity (the 3D box's mask)": [segkit, "quantify", "-m", str(work / "box3d" / "ct_seg.nii.gz"),
                                                                  "-i", str(ct), "--volume", "--intensity"],
        }
        if args.only_nnunet:
            runs = {}
        if args.nnunet_model is not None:
            for backend in args.nnunet_backends.split(","):
                runs[f"nnU-Net --model-dir, --backend {backend}"] = [
                    segkit, "segment", "-i", str(ct), "--model-dir", str(args.nnunet_model), "--backend", backend,
                    "-o", f"{work / ('nnunet_' + backend)}/"]
        print(f"512x512x800 int16 CT, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
              f"load average at start {os.getloadavg()[0]:.1f}")
        print("| command | max RSS | wall | CPU |")
        print("|---|---|---|---|")
        for name, argv in runs.items():
            if argv[-1].endswith("/"):  # an output folder: a rerun must not refuse existing outputs
                shutil.rmtree(argv[-1], ignore_errors=True)
            result = measured(argv)
            print(f"| {name} | {result['max_rss_mib']:.0f} MiB | {result['wall_s']:.1f} s | {result['cpu_s']:.1f} s |", flush=True)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
