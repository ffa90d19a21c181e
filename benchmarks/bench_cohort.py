"""A cohort on Dask (`segkit segment --glob ... --workers N`) with 2 workers vs 1 worker vs one
`segkit segment` process per case (the way users script a study today), in one run.

    .venv/bin/python benchmarks/bench_cohort.py [--medsam-cases 40] [--nnunet-cases 10] [--one-first]

medsam: 40 crops of nilearn's MNI152 template (64x64x6 voxels, bench_batch.py's), a 2D box on one
slice each (one LiteMedSAM encoder call per case), ONNX Runtime on the CPU. nnU-Net: 10 cases of
48x48x32 through a tiny 3D nnU-Net v2 model with seeded random weights (tests/golden/fixtures.py).
Workers have one thread each (OMP_NUM_THREADS=1). Every side writes the same masks (checked). The
per-case overhead is (wall time x workers - the seconds the cases took inside the workers) / cases:
cluster start, model loads, scheduling and the driver's planning, spread over the cases.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import SEGKIT, medsam_cases, nnunet_cases, run  # noqa: E402


def cohort(folder: Path, options: list, out: Path, workers: int) -> tuple[float, float]:
    """(wall seconds, the cases' own seconds summed from the run table)."""
    started = time.perf_counter()
    done = subprocess.run([*SEGKIT, "segment", "--glob", f"{folder}/*.nii.gz", *map(str, options), "-o", str(out),
                           "--workers", str(workers), "--threads-per-worker", "1"], capture_output=True, encoding="utf-8")
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"cohort with {workers} worker(s) failed: {done.stderr[-2000:]}")
    with (out / "segkit_runs.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if {r["status"] for r in rows} != {"done"}:
        raise SystemExit(f"cohort with {workers} worker(s): not every case done: {rows}")
    return wall, sum(float(r["seconds"]) for r in rows)


def same_masks(first: Path, second: Path, name: str) -> None:
    for mask in sorted(first.glob("*.nii.gz")):
        if not np.array_equal(np.asarray(nib.load(mask).dataobj), np.asarray(nib.load(second / mask.name).dataobj)):
            raise SystemExit(f"{name}: {mask.name} differs between {first} and {second}")


def compare(name: str, folder: Path, paths: list[Path], options: list, out: Path, one_first: bool = False,
            processes: bool = True) -> None:
    n = len(paths)
    timed = {}
    for workers in ((1, 2) if one_first else (2, 1)):  # the machine's load drifts: run both orders
        timed[workers] = cohort(folder, options, out / ("one" if workers == 1 else "two"), workers)
        print(f"{name}: {workers} worker(s) {timed[workers][0]:.1f} s", flush=True)
    (two, two_cases), (one, one_cases) = timed[2], timed[1]
    same_masks(out / "two", out / "one", name)
    print(f"{name}: {n} cases | 2 workers {two:.1f} s | 1 worker {one:.1f} s | 2 workers / 1 worker {one / two:.2f}x | "
          f"case seconds in workers {one_cases / n:.2f} (1 worker) {two_cases / n:.2f} (2 workers)", flush=True)
    if not processes:
        return
    each = sum(run(["segment", "-i", p, *options, "-o", f"{out}/each/"]) for p in paths)
    same_masks(out / "two", out / "each", name)
    print(f"{name}: {n} cases | 2 workers {two:.1f} s | 1 worker {one:.1f} s | {n} processes {each:.1f} s | "
          f"2 workers / 1 worker {one / two:.2f}x | 2 workers / processes {each / two:.2f}x | "
          f"case seconds in workers {one_cases / n:.2f} (1 worker) {two_cases / n:.2f} (2 workers) | "
          f"overhead per case {(one - one_cases) / n:.2f} s (1 worker) {(2 * two - two_cases) / n:.2f} s (2 workers) | "
          f"process per case {each / n:.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--medsam-cases", type=int, default=40)
    parser.add_argument("--nnunet-cases", type=int, default=10)
    parser.add_argument("--one-first", action="store_true", help="time 1 worker before 2 workers")
    parser.add_argument("--no-processes", action="store_true", help="leave out one process per case")
    args = parser.parse_args()
    box = ["-task", "medsam", "--box", "20,20,44,44", "--slice", "3", "--axis", "2"]
    with tempfile.TemporaryDirectory(prefix="bench_cohort_") as tmp:
        tmp = Path(tmp)
        run(["segment", *box, "-i", medsam_cases(tmp / "warm", 1)[0], "-o", f"{tmp}/warm/out/"])  # weights + ONNX cache
        if args.medsam_cases:
            paths = medsam_cases(tmp / "medsam" / "in", args.medsam_cases)
            compare("medsam", tmp / "medsam" / "in", paths, box, tmp / "medsam", args.one_first, not args.no_processes)
        if args.nnunet_cases:
            model, cords = nnunet_cases(tmp / "nnunet" / "in", args.nnunet_cases)
            compare("nnU-Net", tmp / "nnunet" / "in", cords, ["--model", model, "--device", "cpu"], tmp / "nnunet",
                    args.one_first, not args.no_processes)


if __name__ == "__main__":
    main()
