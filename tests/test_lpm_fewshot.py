"""lpm_nnsam2 few-shot pseudo-labels with the real LiteMedSAM weights, through the CLI, then quantify.

One annotated slice of one phantom labels two unseen phantoms (CT): Dice >= 0.8 per side, masks
in each target's own geometry, a per-slice IoU table beside each output, and `segkit quantify`
reads the outputs in a shell pipeline (table on stdout).
"""

from __future__ import annotations

from functools import partial
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lpm_cli import run_segkit
from segkit.phantoms.lumbar import make_lumbar_phantom, save_lumbar_phantom, single_slice_support

SHAPE = (112, 96, 4)  # four slices: the walk goes both ways from the start slice; two more cost a CPU minute
LITEMEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"  # REFERENCES.md


segkit = partial(run_segkit, timeout=900)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


@pytest.mark.slow
def test_litemedsam_pseudo_labels_reach_dice_08_and_quantify_reads_them(tmp_path):
    support = make_lumbar_phantom(0, shape=SHAPE)
    paths = save_lumbar_phantom(support, tmp_path, "sup")
    nib.save(nib.Nifti1Image(single_slice_support(support.labels), support.affine), str(tmp_path / "sup_mask.nii.gz"))
    targets = {seed: make_lumbar_phantom(seed, shape=SHAPE) for seed in (21, 22)}
    files = {seed: save_lumbar_phantom(p, tmp_path, f"t{seed}") for seed, p in targets.items()}
    out = tmp_path / "out"
    args = ["segment", "-task", "lpm_nnsam2", "--support", str(paths["ct"]), "--support-mask", str(tmp_path / "sup_mask.nii.gz"),
            "--propagator", "litemedsam", "--backend", "torch", "--device", "cpu", "-o", str(out) + "/"]
    for seed in targets:
        args += ["-i", str(files[seed]["ct"])]
    done = segkit(*args, home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    for seed, phantom in targets.items():
        for value, name in ((1, "lpm_right"), (2, "lpm_left")):
            img = nib.load(out / f"t{seed}_ct_{name}_seg.nii.gz")
            assert img.shape == SHAPE and np.allclose(img.affine, phantom.affine)
            score = dice(np.asarray(img.dataobj) > 0, phantom.labels == value)
            print(f"phantom {seed} {name}: Dice {score:.3f}")
            assert score >= 0.8
        rows = list(csv.DictReader((out / f"t{seed}_ct_lpm_iou.tsv").open(), delimiter="\t"))
        assert len(rows) == SHAPE[2]
        assert all(r["failed_lpm_right"] == "0" and r["failed_lpm_left"] == "0" for r in rows)  # nothing flagged
        sidecar = json.loads((out / f"t{seed}_ct_lpm_left_seg.json").read_text())
        assert Path(sidecar["propagator_weights"]).name == "lite_medsam.pth" and "warning" not in sidecar
        assert sidecar["propagator_weights_sha256"] == LITEMEDSAM_SHA256 and sidecar["start_slices_ras"]
        assert all(0.0 < float(r["iou_lpm_right"]) <= 1.0 and 0.0 < float(r["iou_lpm_left"]) <= 1.0 for r in rows)

    # measures: volumes in mL and mean HU on CT, fat ratio on the Dixon pair, table on stdout
    seed = 21
    pipeline = (
        f"{Path(sys.executable).with_name('segkit')} quantify -m {out}/t{seed}_ct_lpm_right_seg.nii.gz --volume "
        f"--intensity -i {files[seed]['ct']} --fat-ratio --fat {files[seed]['fat']} --water {files[seed]['water']} | cat"
    )
    shell = subprocess.run(pipeline, shell=True, capture_output=True, encoding="utf-8", env={**os.environ, "SEGKIT_HOME": str(tmp_path / "home")})
    assert shell.returncode == 0, shell.stderr
    (row,) = list(csv.DictReader(io.StringIO(shell.stdout), delimiter="\t"))
    truth = targets[seed].truth["lpm_right"]
    print(f"right LPM: {row['volume_ml']} mL (truth {truth['volume_ml']:.2f}), mean HU {row['mean']} "
          f"(truth {truth['mean_hu']:.1f}), fat ratio {row['ff_pooled']} (truth {truth['fat_fraction']:.3f})")
    assert abs(float(row["volume_ml"]) - truth["volume_ml"]) / truth["volume_ml"] < 0.25
    assert abs(float(row["ff_pooled"]) - truth["fat_fraction"]) < 0.05
