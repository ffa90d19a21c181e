"""Seconds and peak memory per subject for cc_fodf's DWI -> peaks step (dipy CSD), in one run.

    .venv/bin/python benchmarks/bench_cc_peaks.py [--subjects 2] [--shape 48 56 40] [--voxel 2.5] [--jobs 1]

Each subject is a phantom from segkit.phantoms.cc_dwi (b=1000, 32 directions, 3 b0) written to
disk first; a fresh Python process then reads it with `load_cc_input` and runs `compute_peaks`
(median_otsu mask, automatic response, SH order 6, 3 peaks), and a sampler thread records the RSS
growth during reading + peaks (the process's max RSS is dominated by dipy's imports).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import dipy.reconst.csdeconv, dipy.direction, dipy.segment.mask  # noqa: F401  (import cost, reported apart)
from segkit.tasks.cc_fodf.inputs import load_cc_input
from segkit.tasks.cc_fodf.peaks import compute_peaks
import os, threading
def current_rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
samples = []
stop = threading.Event()
def sample():  # current RSS every 20 ms: ru_maxrss alone is dominated by the import peak
    while not stop.is_set():
        samples.append(current_rss()); stop.wait(0.02)
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start_rss = current_rss()
threading.Thread(target=sample, daemon=True).start()
t1 = time.perf_counter()
dwi, bval, bvec, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cc_input = load_cc_input(dwi, bval, bvec)
t2 = time.perf_counter()
result = compute_peaks(cc_input.image, cc_input.gradients.bvals, cc_input.gradients.bvecs, n_jobs=jobs)
t3 = time.perf_counter()
stop.set()
print(json.dumps({
    "imports_s": t1 - t0, "read_s": t2 - t1, "peaks_s": t3 - t2,
    "baseline_rss_mib": base_rss / 1024, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "step_rss_mib": (max(samples) - start_rss) / 2**20, "start_rss_mib": start_rss / 2**20, "brain_voxels": int(result.brain_mask.sum()), "sh_order": result.sh_order,
    "response_voxels": result.n_response_voxels, "dwi_mib": cc_input.image.data.nbytes / 2**20,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 56, 40))
    parser.add_argument("--voxel", type=float, default=2.5)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    from segkit.phantoms.cc_dwi import make_cc_phantom, write_cc_subject

    print(f"shape {tuple(args.shape)} at {args.voxel} mm, {args.subjects} subject(s), n_jobs={args.jobs}")
    print("subject | brain voxels | read s | peaks s | max RSS MiB | RSS growth during read+peaks MiB | DWI MiB | s per 10k voxels")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.subjects):
            phantom = make_cc_phantom(seed, shape=tuple(args.shape), voxel_size=args.voxel)
            files = write_cc_subject(phantom, Path(tmp), name=f"sub-{seed:03d}")
            del phantom
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(files.dwi), str(files.bval), str(files.bvec), str(args.jobs)],
                check=True, capture_output=True, encoding="utf-8",
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            per_10k = r["peaks_s"] / r["brain_voxels"] * 1e4
            print(
                f"sub-{seed:03d} | {r['brain_voxels']} | {r['read_s']:.2f} | {r['peaks_s']:.1f} | "
                f"{r['peak_rss_mib']:.0f} | {r['step_rss_mib']:.0f} (from {r['start_rss_mib']:.0f}) | {r['dwi_mib']:.1f} | {per_10k:.2f}"
            )


if __name__ == "__main__":
    main()
