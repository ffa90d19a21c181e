"""Hard cases for `segkit eval`: segkit vs DeepMind surface-distance vs MONAI, in one run.

    .venv/bin/python benchmarks/bench_eval_hard.py [--sizes 256 512] [--repeats 2] [--skip-monai]
        [--cases cavity,leak] [--memory]

Pairs (reference, prediction), built at 256^3 (1 mm) and 512x512x300 (0.8x0.8x1.5 mm) around an
ellipsoid organ (semi-axes 80, 64, 90 mm; about 2 M voxels at 512x512x300):

    shifted_bumpy  the prediction is shifted, 3% larger and bumpy (surfaces a few voxels apart)
    cavity         the same prediction with an internal hole (0.45 of the organ's semi-axes)
    missed_lesion  the reference also has an 8 mm lesion in a far corner that the prediction misses
    leak           the prediction also has a 12 mm false-positive blob in the opposite corner
    disjoint       two smaller organs (0.6 of the semi-axes) on opposite sides, not touching
    one_voxel      the prediction is one voxel at the organ's centre
    fills_volume   the prediction is the whole image

Every pair is written to NIfTI and each tool runs as its own process, timed from start to exit
(interpreter start, imports, reading the files, HD95 + ASSD + NSD at 2 mm): `segkit eval
--surface surfel` against DeepMind surface-distance, `segkit eval --surface voxel` against MONAI
(its three public metric functions, as a user calls them). Each process also reports its own
read + compute time, after the imports. The runs go round robin (every tool on every pair, then
again), so a slow spell of a shared machine does not fall on every run of one pair. Printed per
pair: best-of-N wall time of each process, the ratios, the largest relative difference of the
three values, and segkit's time relative to the easiest pair of the same size.

--memory instead writes 512x512x800 pairs and prints the max RSS of the whole `segkit eval`
process (all metrics), as /usr/bin/time -v reports it (os.wait4's ru_maxrss). The pairs are built
by a process of their own: a child's max RSS includes the peak of the process that started it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOLERANCE = 2.0
SIZES = {
    256: ((256, 256, 256), (1.0, 1.0, 1.0)),
    512: ((512, 512, 300), (0.8, 0.8, 1.5)),
    800: ((512, 512, 800), (0.8, 0.8, 1.5)),
}
CASES = ("shifted_bumpy", "cavity", "missed_lesion", "leak", "disjoint", "one_voxel", "fills_volume")
SEMI_AXES_MM = (80.0, 64.0, 90.0)


# --- pairs ----------------------------------------------------------------------------------


def _ellipsoid(coords, centre_mm, semi_mm, grow=1.0, bumps=False):
    total = 0.0
    for x, c, a in zip(coords, centre_mm, semi_mm):
        total = total + ((x - c) / (a * grow)) ** 2
    if bumps:
        x, y, z = coords
        total = total + 0.04 * np.sin(x / 6.0) * np.cos(y / 7.0) * np.sin(z / 5.0)
    return total <= 1.0


def make_pair(case: str, shape, spacing):
    """(ref, pred) boolean arrays, built 16 slices at a time (the 800-slice pair stays small)."""
    ref = np.zeros(shape, dtype=bool)
    pred = np.zeros(shape, dtype=bool)
    extent = [n * s for n, s in zip(shape, spacing)]
    shift = (1.6, -0.8, 3.0)
    lesion_at = (-0.38 * extent[0], 0.38 * extent[1], -0.3 * extent[2])
    leak_at = (0.36 * extent[0], -0.36 * extent[1], 0.3 * extent[2])
    small = tuple(0.6 * a for a in SEMI_AXES_MM)
    for start in range(0, shape[2], 16):
        stop = min(shape[2], start + 16)
        coords = [((np.arange(n) - n / 2) * s) for n, s in zip(shape, spacing)]
        coords[2] = coords[2][start:stop]
        coords = np.meshgrid(*[c.astype(np.float32) for c in coords], indexing="ij", sparse=True)
        organ = _ellipsoid(coords, (0, 0, 0), SEMI_AXES_MM)
        bumpy = _ellipsoid(coords, shift, SEMI_AXES_MM, grow=1.03, bumps=True)
        if case == "shifted_bumpy":
            r, p = organ, bumpy
        elif case == "cavity":
            r, p = organ, bumpy & ~_ellipsoid(coords, (0, 0, 0), tuple(0.45 * a for a in SEMI_AXES_MM))
        elif case == "missed_lesion":
            r, p = organ | _ellipsoid(coords, lesion_at, (8.0, 8.0, 8.0)), bumpy
        elif case == "leak":
            r, p = organ, bumpy | _ellipsoid(coords, leak_at, (12.0, 12.0, 12.0))
        elif case == "disjoint":
            r = _ellipsoid(coords, (-0.25 * extent[0], 0, 0), small)
            p = _ellipsoid(coords, (0.25 * extent[0], 0, 0), small, bumps=True)
        elif case == "one_voxel":
            r, p = organ, np.zeros(organ.shape, dtype=bool)
        elif case == "fills_volume":
            r, p = organ, np.ones(organ.shape, dtype=bool)
        else:
            raise ValueError(case)
        ref[:, :, start:stop] = r
        pred[:, :, start:stop] = p
    if case == "one_voxel":
        pred[tuple(n // 2 for n in shape)] = True
    return ref, pred


def write_pair_elsewhere(folder: Path, case: str, size: int):
    """write_pair in a process of its own. A child started by this process reports this process's
    peak memory as part of its own max RSS (the kernel counts the address space it was started from),
    so the arrays of a pair must never be built here."""
    me = [sys.executable, str(Path(__file__).resolve())]
    done = subprocess.run(me + ["--write-pair", case, str(size), str(folder)], capture_output=True, text=True, check=True)
    n_ref, n_pred = json.loads(done.stdout)
    return (folder / f"{case}_ref.nii.gz", folder / f"{case}_pred.nii.gz"), n_ref, n_pred


def write_pair(folder: Path, case: str, shape, spacing):
    import nibabel as nib

    ref, pred = make_pair(case, shape, spacing)
    affine = np.diag(list(spacing) + [1.0])
    paths = (folder / f"{case}_ref.nii.gz", folder / f"{case}_pred.nii.gz")
    for path, mask in zip(paths, (ref, pred)):
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(path))
    return paths, int(ref.sum()), int(pred.sum())


# --- workers: each tool in its own process ----------------------------------------------------


def _load(path):
    import nibabel as nib

    image = nib.load(str(path))
    return np.asarray(image.dataobj).astype(bool), tuple(float(z) for z in image.header.get_zooms()[:3])


def worker(tool: str, ref_path: str, pred_path: str) -> None:
    """Print {"seconds": read + compute after the imports, "hd95", "assd", "nsd"} as JSON."""
    import warnings

    warnings.filterwarnings("ignore")
    if tool == "deepmind":
        import surface_distance as sd
    elif tool == "monai":
        import torch
        from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice
    else:
        from segkit.metrics.evaluate import EvalOptions, evaluate_files
    start = time.perf_counter()
    if tool == "deepmind":
        ref, spacing = _load(ref_path)
        pred, _ = _load(pred_path)
        d = sd.compute_surface_distances(ref, pred, spacing)
        areas = (d["surfel_areas_gt"], d["surfel_areas_pred"])
        pooled = (np.sum(d["distances_gt_to_pred"] * areas[0]) + np.sum(d["distances_pred_to_gt"] * areas[1])) / (
            areas[0].sum() + areas[1].sum())
        values = {"hd95": sd.compute_robust_hausdorff(d, 95), "assd": float(pooled),
                  "nsd": sd.compute_surface_dice_at_tolerance(d, TOLERANCE)}
    elif tool == "monai":
        ref, spacing = _load(ref_path)
        pred, _ = _load(pred_path)
        y_pred, y = (torch.from_numpy(a[None, None].astype(np.float32)) for a in (pred, ref))
        kw = {"include_background": True, "spacing": list(spacing)}
        values = {"hd95": compute_hausdorff_distance(y_pred, y, percentile=95, **kw).item(),
                  "assd": compute_average_surface_distance(y_pred, y, symmetric=True, **kw).item(),
                  "nsd": compute_surface_dice(y_pred, y, [TOLERANCE], **kw).item()}
    else:
        options = EvalOptions(metrics=("hd95", "assd", "nsd"), tolerance_mm=TOLERANCE, surface=tool.split("-")[1])
        rows, _ = evaluate_files(pred_path, ref_path, {"1": (1,)}, options)
        values = {"hd95": rows[0]["hd95_mm"], "assd": rows[0]["assd_mm"], "nsd": rows[0]["nsd"]}
    values["seconds"] = time.perf_counter() - start
    print(json.dumps({k: float(v) for k, v in values.items()}))


# --- running and timing -----------------------------------------------------------------------


def timed(argv):
    """Run one process with os.wait4, so its own CPU time and max RSS are known."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))} failed ({child.returncode}): {stderr[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024, "out": stdout}


def segkit_eval_argv(ref, pred, surface, metrics="hd95,assd,nsd"):
    segkit = str(Path(sys.executable).parent / "segkit")
    return [segkit, "eval", "--ref", str(ref), "--pred", str(pred), "--labels", "1", "--metrics", metrics,
            "--surface", surface, "--tolerance-mm", str(TOLERANCE), "--format", "json"]


def best_of(runs, parse):
    """The best of several timed runs of one process (the fastest wall; the least CPU)."""
    parsed = [parse(run["out"]) for run in runs]
    best = min(range(len(runs)), key=lambda i: runs[i]["wall"])
    return {"wall": runs[best]["wall"], "cpu": min(run["cpu"] for run in runs),
            "rss_mib": max(run["rss_mib"] for run in runs),
            "values": {k: v for k, v in parsed[best].items() if k != "seconds"},
            "inner_best": min(p.get("seconds", float("inf")) for p in parsed)}


def _parse_segkit(text):
    row = json.loads(text)[0]
    return {"hd95": row["hd95_mm"], "assd": row["assd_mm"], "nsd": row["nsd"]}


def _parse_worker(text):
    return json.loads(text.strip().splitlines()[-1])


def max_rel_diff(ours, theirs):
    worst = 0.0
    for key in ("hd95", "assd", "nsd"):
        a, b = ours[key], theirs[key]
        if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)):
            return float("nan") if a != b else worst
        worst = max(worst, abs(a - b) / abs(b) if b else abs(a - b))
    return worst


def bench_size(size, cases, repeats, skip_monai, folder):
    shape, spacing = SIZES[size]
    print(f"\n## {'x'.join(map(str, shape))} at {spacing} mm (best of {repeats}; load average {os.getloadavg()[0]:.1f})",
          flush=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    tools = {
        "segkit_surfel": (lambda ref, pred: segkit_eval_argv(ref, pred, "surfel"), _parse_segkit),
        "segkit_surfel_inner": (lambda ref, pred: me + ["--worker", "segkit-surfel", str(ref), str(pred)], _parse_worker),
        "deepmind": (lambda ref, pred: me + ["--worker", "deepmind", str(ref), str(pred)], _parse_worker),
        "segkit_voxel": (lambda ref, pred: segkit_eval_argv(ref, pred, "voxel"), _parse_segkit),
        "segkit_voxel_inner": (lambda ref, pred: me + ["--worker", "segkit-voxel", str(ref), str(pred)], _parse_worker),
    }
    pairs = {case: write_pair_elsewhere(folder, case, size) for case in cases}
    runs = {case: {tool: [] for tool in tools} for case in cases}
    # Round robin: every round runs each tool once on every pair, so that a slow spell of this
    # shared machine costs one run of a few pairs, not every run of one pair (the ratios between
    # pairs are what the 2x target compares).
    for round_number in range(repeats):
        for case in cases:
            (ref, pred), _, _ = pairs[case]
            for tool, (argv, _) in tools.items():
                runs[case][tool].append(timed(argv(ref, pred)))
        print(f"round {round_number + 1} of {repeats} done (load average {os.getloadavg()[0]:.1f})", flush=True)
    results = {}
    for case in cases:
        (ref, pred), n_ref, n_pred = pairs[case]
        row = {"n_ref": n_ref, "n_pred": n_pred}
        row.update({tool: best_of(runs[case][tool], parse) for tool, (_, parse) in tools.items()})
        if not skip_monai:
            row["monai"] = best_of([timed(me + ["--worker", "monai", str(ref), str(pred)])], _parse_worker)
        results[case] = row
        _print_case(case, row, skip_monai)
        for path in (ref, pred):
            path.unlink()
    easiest = min(r["segkit_surfel"]["wall"] for r in results.values())
    easiest_voxel = min(r["segkit_voxel"]["wall"] for r in results.values())
    print(f"\n| {size} case | segkit surfel / DeepMind (process) | ratio | segkit voxel / MONAI (process) | ratio "
          f"| read+compute: segkit surfel / DeepMind, segkit voxel / MONAI | max rel. diff vs DeepMind / MONAI "
          f"| segkit vs easiest pair (surfel / voxel) | segkit max RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, row in results.items():
        s, d, v = row["segkit_surfel"], row["deepmind"], row["segkit_voxel"]
        si, vi = row["segkit_surfel_inner"], row["segkit_voxel_inner"]
        m = row.get("monai")
        monai_cells = (f"{v['wall']:.2f} s / {m['wall']:.1f} s", f"{m['wall'] / v['wall']:.0f}x") if m else (f"{v['wall']:.2f} s / -", "-")
        inner = f"{si['inner_best']:.2f} / {d['inner_best']:.2f} s, {vi['inner_best']:.2f} / " + (
            f"{m['inner_best']:.1f} s" if m else "-")
        diffs = f"{max_rel_diff(s['values'], d['values']):.1e} / " + (
            f"{max_rel_diff(v['values'], m['values']):.1e}" if m else "-")
        print(f"| {case} | {s['wall']:.2f} s / {d['wall']:.2f} s | {d['wall'] / s['wall']:.1f}x | {monai_cells[0]} "
              f"| {monai_cells[1]} | {inner} | {diffs} | {s['wall'] / easiest:.2f} / {v['wall'] / easiest_voxel:.2f} "
              f"| {s['rss_mib']:.0f} MiB |", flush=True)
    return results


def _print_case(case, row, skip_monai):
    s, d, v = row["segkit_surfel"], row["deepmind"], row["segkit_voxel"]
    print(f"{case}: ref {row['n_ref']:,} voxels, pred {row['n_pred']:,} voxels", flush=True)
    print(f"   surfel: segkit {s['wall']:.2f} s wall ({s['cpu']:.2f} s CPU, read+compute "
          f"{row['segkit_surfel_inner']['inner_best']:.2f} s), DeepMind {d['wall']:.2f} s ({d['cpu']:.2f} s CPU, "
          f"read+compute {d['inner_best']:.2f} s) -> {d['wall'] / s['wall']:.1f}x", flush=True)
    print(f"      segkit {s['values']}\n      DeepMind {d['values']}", flush=True)
    if not skip_monai:
        m = row["monai"]
        print(f"   voxel: segkit {v['wall']:.2f} s wall ({v['cpu']:.2f} s CPU, read+compute "
              f"{row['segkit_voxel_inner']['inner_best']:.2f} s), MONAI {m['wall']:.1f} s ({m['cpu']:.1f} s CPU, "
              f"read+compute {m['inner_best']:.1f} s) -> {m['wall'] / v['wall']:.0f}x", flush=True)
        print(f"      segkit {v['values']}\n      MONAI {m['values']}", flush=True)


def bench_memory(cases, folder):
    shape, spacing = SIZES[800]
    print(f"\n## max RSS of the whole `segkit eval` process (all metrics), {'x'.join(map(str, shape))} at {spacing} mm")
    print("| case | ref voxels | pred voxels | max RSS | wall | CPU |\n|---|---|---|---|---|---|")
    for case in cases:
        (ref, pred), n_ref, n_pred = write_pair_elsewhere(folder, case, 800)
        segkit = str(Path(sys.executable).parent / "segkit")
        run = timed([segkit, "eval", "--ref", str(ref), "--pred", str(pred), "--format", "json"])
        print(f"| {case} | {n_ref:,} | {n_pred:,} | {run['rss_mib']:.0f} MiB | {run['wall']:.1f} s | {run['cpu']:.1f} s |",
              flush=True)
        for path in (ref, pred):
            path.unlink()


def _compile_segkit() -> None:
    """Time segkit as installed, with its bytecode written: where PYTHONDONTWRITEBYTECODE is set, an
    editable checkout would otherwise compile every changed module again in each timed process."""
    import compileall

    import segkit

    compileall.compile_dir(str(Path(segkit.__file__).parent), quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], choices=[256, 512])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--memory", action="store_true", help="max RSS on 512x512x800 pairs instead")
    parser.add_argument("--worker", nargs=3, metavar=("TOOL", "REF", "PRED"), help=argparse.SUPPRESS)
    parser.add_argument("--write-pair", nargs=3, metavar=("CASE", "SIZE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if args.write_pair:
        case, size, folder = args.write_pair
        _, n_ref, n_pred = write_pair(Path(folder), case, *SIZES[int(size)])
        print(json.dumps([n_ref, n_pred]))
        return
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    _compile_segkit()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.memory:
            bench_memory(cases, Path(tmp))
            return
        for size in args.sizes:
            bench_size(size, cases, args.repeats, args.skip_monai, Path(tmp))


if __name__ == "__main__":
    main()
