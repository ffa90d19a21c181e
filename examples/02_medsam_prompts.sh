#!/usr/bin/env bash
# medsam prompts without voxel boxes, with the segkit CLI on the MNI152 template (nilearn):
#   1. --prompt-mask: a coarse label map (here: a dilated dark-CSF threshold, label 1 = left and
#      2 = right lateral ventricle, as an atlas or a rough earlier segmentation would give) becomes
#      one 3D box per label; LiteMedSAM refines each inside it.
#   2. --box-mm: a box in world (RAS) millimetres, e.g. read off a viewer or an atlas; segkit maps it
#      to voxels with the image's affine, whatever the storage order.
#
#   bash examples/02_medsam_prompts.sh [OUT_DIR]      (default: a new temp folder)
#   env: SLICES (axial slices per structure, default 8), DEVICE (default auto)
set -euo pipefail

OUT="${1:-$(mktemp -d -t segkit_medsam_prompts.XXXXXX)}"
SLICES="${SLICES:-8}"
DEVICE="${DEVICE:-auto}"
mkdir -p "$OUT"

MNI="$(python -c 'import nilearn.datasets as d; print(d.MNI152_FILE_PATH)')"

# Axial slices around z = 23 mm (voxel k = 95: MNI152 is stored RAS with origin at voxel 98,134,72).
K0=$((95 - SLICES / 2))
K1=$((K0 + SLICES - 1))

# --- 1. a coarse mask -> one box per label ---------------------------------------------------
python - "$MNI" "$OUT/coarse_ventricles.nii.gz" "$K0" "$K1" <<'PY'
import sys

import nibabel as nib
import numpy as np
from scipy import ndimage

src, dst, k0, k1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
image = nib.load(src)
t1 = np.asarray(image.dataobj, dtype=np.float32)
coarse = np.zeros(t1.shape, dtype=np.uint8)
# Dark (CSF) voxels near the midline, left (i < 98) and right (i >= 98) hemispheres, dilated by
# 3 voxels in-plane: deliberately rough, as an atlas label would be.
for label, (i0, i1) in ((1, (70, 98)), (2, (98, 127))):
    region = np.zeros(t1.shape, dtype=bool)
    region[i0:i1, 85:150, k0:k1 + 1] = True
    dark = (t1 < 90) & region
    components, n = ndimage.label(dark)
    largest = components == 1 + np.argmax(ndimage.sum(dark, components, range(1, n + 1)))
    grown = ndimage.binary_dilation(largest, structure=np.ones((3, 3, 1), bool), iterations=3) & region
    coarse[grown] = label
nib.save(nib.Nifti1Image(coarse, image.affine), dst)
print(f"coarse mask: {dst} ({int((coarse == 1).sum())} + {int((coarse == 2).sum())} voxels)")
PY

segkit segment -task medsam -i "$MNI" --prompt-mask "$OUT/coarse_ventricles.nii.gz" \
    --device "$DEVICE" -o "$OUT/from_mask/"

# --- 2. a box in world millimetres ---------------------------------------------------------
# The left lateral ventricle: x from -25 to 0 mm (left of the midline), y from -45 to 12 mm,
# z over the same axial slices as above (z = k - 72).
segkit segment -task medsam -i "$MNI" --box-mm "-25,-45,$((K0 - 72)),0,12,$((K1 - 72))" \
    --device "$DEVICE" -o "$OUT/from_mm/"

# The sidecars record the boxes segkit derived, in voxels: one per coarse label, one from mm.
python - "$OUT" <<'PY'
import json
import sys
from pathlib import Path

for sidecar in sorted(Path(sys.argv[1]).glob("from_*/*_seg.json")):
    boxes = [(p["source"], p["lo"], p["hi"]) for p in json.loads(sidecar.read_text())["prompts"]]
    print(f"{sidecar.parent.name}: {boxes}")
PY
echo "outputs in $OUT"
