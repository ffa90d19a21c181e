#!/usr/bin/env bash
# Score a folder of predictions against a folder of references (matched by file name) and get one
# CSV: a row per case and label (overlap, surface distances in mm, volumes) plus mean/std/median
# rows. Here the references are lumbar phantoms' true right/left paraspinal muscle labels and the
# predictions come from a deliberately simple classical method (an HU window behind the spine), so
# the numbers are imperfect, as a baseline's are.
#
#   bash examples/05_eval_folder.sh [OUT_DIR]      (default: a new temp folder)
#   env: CASES (default 5), SLICES (axial slices per phantom, default 12)
#   your own data: segkit eval --pred-dir PREDS/ --ref-dir REFS/ --format csv > eval.csv
set -euo pipefail

OUT="${1:-$(mktemp -d -t segkit_eval.XXXXXX)}"
CASES="${CASES:-5}"
SLICES="${SLICES:-12}"
mkdir -p "$OUT/refs" "$OUT/preds"

python - "$OUT" "$CASES" "$SLICES" <<'PY'
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from segkit.phantoms.lumbar import make_lumbar_phantom

out, cases, slices = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])


def hu_baseline(ct: np.ndarray) -> np.ndarray:
    """Muscle-range HU voxels behind the vertebral body, split at the spine's midline: 1 right, 2 left.

    Arrays are RAS (first axis toward Right, second toward Anterior), axial slices on the third.
    """
    labels = np.zeros(ct.shape, dtype=np.uint8)
    for k in range(ct.shape[2]):
        bone = ndimage.binary_opening(ct[:, :, k] > 200, iterations=1)
        if not bone.any():
            continue
        spine_x, spine_y = np.argwhere(bone).mean(axis=0)
        muscle = ndimage.binary_opening((ct[:, :, k] > -20) & (ct[:, :, k] < 120), iterations=1)
        x, y = np.indices(muscle.shape)
        behind = muscle & (y < spine_y - 10)  # posterior to the vertebral body
        labels[:, :, k][behind & (x >= spine_x)] = 1
        labels[:, :, k][behind & (x < spine_x)] = 2
    return labels


for seed in range(40, 40 + cases):
    phantom = make_lumbar_phantom(seed, shape=(112, 96, slices))
    name = f"case{seed:03d}.nii.gz"  # the same file name in both folders pairs them
    nib.save(nib.Nifti1Image(phantom.labels, phantom.affine), str(out / "refs" / name))
    nib.save(nib.Nifti1Image(hu_baseline(phantom.ct), phantom.affine), str(out / "preds" / name))
print(f"{cases} references in {out / 'refs'}, {cases} predictions in {out / 'preds'}")
PY

segkit eval --pred-dir "$OUT/preds" --ref-dir "$OUT/refs" --format csv > "$OUT/eval.csv"

# the table is plain CSV: e.g. per-case Dice, then the summary rows segkit appends
python - "$OUT/eval.csv" <<'PY'
import csv
import sys

for row in csv.DictReader(open(sys.argv[1], newline="")):
    print(f"{row['case']:>10}  label {row['label']}  Dice {float(row['dice']):.3f}  HD95 {float(row['hd95_mm']):.1f} mm")
PY
echo "table: $OUT/eval.csv"
