#!/usr/bin/env bash
# lpm_nnsam2 few-shot, offline: one annotated axial slice of one subject labels the right and left
# lumbar paraspinal muscles of another subject's whole CT (LiteMedSAM box propagation, the weights
# segkit ships), then a shell pipeline turns the masks into muscle volume, mean HU on the CT and
# fat fraction on the Dixon fat/water pair, beside the phantom's true values.
#
#   bash examples/04_lpm_fewshot_quantify.sh [OUT_DIR]      (default: a new temp folder)
#   env: SLICES (axial slices per phantom, default 12), DEVICE (default auto)
set -euo pipefail

OUT="${1:-$(mktemp -d -t segkit_lpm.XXXXXX)}"
SLICES="${SLICES:-12}"
DEVICE="${DEVICE:-auto}"
mkdir -p "$OUT"

# --- phantoms: support subject (seed 0) with its middle slice annotated; target subject (seed 21)
# with CT, Dixon fat and water on one grid, and its true labels and numbers for comparison
python - "$OUT" "$SLICES" <<'PY'
import json
import sys
from pathlib import Path

import nibabel as nib

from segkit.phantoms.lumbar import make_lumbar_phantom, save_lumbar_phantom, single_slice_support

out, slices = Path(sys.argv[1]), int(sys.argv[2])
support = make_lumbar_phantom(0, shape=(112, 96, slices))
save_lumbar_phantom(support, out / "support", "sup")
annotated = single_slice_support(support.labels)  # 1 right / 2 left on one slice, 0 elsewhere
nib.save(nib.Nifti1Image(annotated, support.affine), str(out / "support" / "sup_mask.nii.gz"))
target = make_lumbar_phantom(21, shape=(112, 96, slices))
save_lumbar_phantom(target, out / "target", "t21")  # t21_ct, t21_fat, t21_water, t21_seg (truth)
(out / "target" / "t21_truth.json").write_text(json.dumps(target.truth, indent=2))
PY

# --- few-shot segmentation of the target CT: one mask per side, plus a per-slice IoU table
segkit segment -task lpm_nnsam2 -i "$OUT/target/t21_ct.nii.gz" \
    --support "$OUT/support/sup_ct.nii.gz" --support-mask "$OUT/support/sup_mask.nii.gz" \
    --propagator litemedsam --device "$DEVICE" -o "$OUT/seg/"

# --- quantify both sides in one call (-i/--fat/--water once per -m), keep the columns we report
T="$OUT/target"
segkit quantify \
    -m "$OUT/seg/t21_ct_lpm_right_seg.nii.gz" -i "$T/t21_ct.nii.gz" --fat "$T/t21_fat.nii.gz" --water "$T/t21_water.nii.gz" \
    -m "$OUT/seg/t21_ct_lpm_left_seg.nii.gz" -i "$T/t21_ct.nii.gz" --fat "$T/t21_fat.nii.gz" --water "$T/t21_water.nii.gz" \
    --volume --intensity --fat-ratio \
  | awk -F'\t' -v OFS='\t' '
      NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; print "subject", "volume_ml", "mean_hu", "fat_fraction"; next }
      { print $col["subject"], $col["volume_ml"], $col["mean"], $col["ff_pooled"] }' \
  | tee "$OUT/lpm_measures.tsv"

echo "phantom truth (noise-free):"
python - "$T/t21_truth.json" <<'PY'
import json
import sys

for name, t in json.load(open(sys.argv[1])).items():
    print(f"{name}\t{t['volume_ml']:.3f} mL\t{t['mean_hu']:.1f} HU\tFF {t['fat_fraction']:.3f}")
PY
echo "outputs in $OUT"
