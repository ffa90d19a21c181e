"""Time `segkit eval`'s surface metrics against DeepMind surface-distance and MONAI, in one run.

    .venv/bin/python benchmarks/bench_eval.py [--repeats 3] [--skip-monai]

Pair: 512x512x300 at 0.8x0.8x1.5 mm, an ellipsoid organ of about 2 million voxels and a
prediction that is shifted, slightly larger and has a bumpy surface. Each tool computes HD95,
NSD (2 mm) and ASSD; segkit in surfel mode is compared with surface-distance, in voxel mode
with MONAI. Prints the best-of-N times, the ratios and the values side by side. Then times the
whole `segkit eval` process on a 256^3 pair (includes interpreter start and file reading).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SPACING = (0.8, 0.8, 1.5)
TOLERANCE = 2.0


def organ_pair(shape=(512, 512, 300), spacing=SPACING):
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    centre = [n / 2 for n in shape]
    semi_axes_mm = (80.0, 64.0, 90.0)  # 4/3 pi abc / voxel volume = about 2 M voxels

    def ellipsoid(shift_mm, grow, bumps):
        total = 0.0
        for g, c, s, a, d in zip(grid, centre, spacing, semi_axes_mm, shift_mm):
            total = total + (((g - c) * s - d) / (a * grow)) ** 2
        if bumps:
            x, y, z = ((g - c) * s for g, c, s in zip(grid, centre, spacing))
            total = total + 0.04 * np.sin(x / 6.0) * np.cos(y / 7.0) * np.sin(z / 5.0)
        return total <= 1.0

    ref = ellipsoid((0.0, 0.0, 0.0), 1.0, False)
    pred = ellipsoid((1.6, -0.8, 3.0), 1.03, True)
    return ref, pred


def best_of(fn, repeats):
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def segkit_metrics(ref, pred, definition):
    from segkit.metrics.surface import surface_distances, surface_metrics

    m = surface_metrics(surface_distances(ref, pred, SPACING, definition), TOLERANCE)
    return {"hd95": m["hd95"], "nsd": m["nsd"], "assd": m["assd"] if definition == "voxel" else m["masd"]}


def deepmind_metrics(ref, pred):
    import surface_distance as sd

    d = sd.compute_surface_distances(ref, pred, SPACING)
    return {"hd95": sd.compute_robust_hausdorff(d, 95), "nsd": sd.compute_surface_dice_at_tolerance(d, TOLERANCE),
            "assd": float(np.mean(sd.compute_average_surface_distance(d)))}


def monai_metrics(ref, pred):
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    y_pred, y = (torch.from_numpy(a[None, None].astype(np.float32)) for a in (pred, ref))
    kw = {"include_background": True, "spacing": list(SPACING)}
    return {"hd95": compute_hausdorff_distance(y_pred, y, percentile=95, **kw).item(),
            "nsd": compute_surface_dice(y_pred, y, [TOLERANCE], **kw).item(),
            "assd": compute_average_surface_distance(y_pred, y, symmetric=True, **kw).item()}


def report(name, ours, theirs, t_ours, t_theirs):
    print(f"{name}: segkit {t_ours:.3f} s vs {t_theirs:.3f} s -> {t_theirs / t_ours:.1f}x faster")
    for key in ours:
        print(f"   {key:5s} segkit {ours[key]:.6f}  reference {theirs[key]:.6f}  rel.diff {abs(ours[key] / theirs[key] - 1):.1e}")


def time_cli(argv, repeats):
    """Best wall time and best CPU time (user + sys of the child) over the repeats.

    CPU time is the steadier number on a shared machine: waiting for a core adds to wall only.
    """
    import resource

    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "segkit")] + argv, check=True, stdout=subprocess.DEVNULL)
        best_wall = min(best_wall, time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best_cpu = min(best_cpu, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-monai", action="store_true")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    ref, pred = organ_pair()
    print(f"pair {ref.shape} at {SPACING} mm: ref {ref.sum():,} voxels, pred {pred.sum():,} voxels")
    t_ours, ours = best_of(lambda: segkit_metrics(ref, pred, "surfel"), args.repeats)
    t_dm, dm = best_of(lambda: deepmind_metrics(ref, pred), args.repeats)
    report("surfel mode vs DeepMind surface-distance (HD95, NSD, MASD)", ours, dm, t_ours, t_dm)
    if not args.skip_monai:
        t_ours, ours = best_of(lambda: segkit_metrics(ref, pred, "voxel"), args.repeats)
        t_mo, mo = best_of(lambda: monai_metrics(ref, pred), 1)
        report("voxel mode vs MONAI (HD95, NSD, ASSD)", ours, mo, t_ours, t_mo)
    import nibabel as nib

    with tempfile.TemporaryDirectory() as tmp:
        small_ref, small_pred = organ_pair((256, 256, 256), (1.0, 1.0, 1.0))
        affine = np.eye(4)
        paths = [str(Path(tmp) / n) for n in ("ref.nii.gz", "pred.nii.gz")]
        for path, mask in zip(paths, (small_ref, small_pred)):
            nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), path)
        wall, cpu = time_cli(["eval", "--ref", paths[0], "--pred", paths[1]], args.repeats)
        print(f"whole `segkit eval` process on 256^3 (all metrics): {wall:.3f} s wall, {cpu:.3f} s CPU "
              f"(best of {args.repeats}; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
