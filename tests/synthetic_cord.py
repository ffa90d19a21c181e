"""A tiny synthetic T2w-like spinal cord dataset in nnU-Net v2 format (independent of segkit).

Each case is a 48x48x32 volume: noisy background, a bright, gently wandering cylinder ('cord',
label 1) running along the third (inferior-superior) axis, holding a brighter blob ('lesion',
label 2). Labels are declared region-based like SCIseg's dataset.json: sc = [1, 2], lesion = 2.

Usage: python synthetic_cord.py OUT_DIR [N_CASES]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (48, 48, 32)
SPACING = (1.0, 1.0, 2.0)
# nibabel "LAS" (SCT's "RPI"): first axis toward Left, second Anterior, third Superior
LAS_AFFINE = np.array(
    [[-SPACING[0], 0, 0, 24.0], [0, SPACING[1], 0, -24.0], [0, 0, SPACING[2], -32.0], [0, 0, 0, 1]]
)

DATASET_JSON = {
    "channel_names": {"0": "T2w"},
    "labels": {"background": 0, "sc": [1, 2], "lesion": 2},
    "regions_class_order": [1, 2],
    "file_ending": ".nii.gz",
    "name": "SyntheticCord",
}


def make_case(seed: int, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, labels uint8) for one synthetic case; the seed fixes everything."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    x, y = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    labels = np.zeros(shape, dtype=np.uint8)
    centre = np.array([nx / 2 + rng.uniform(-4, 4), ny / 2 + rng.uniform(-4, 4)])
    drift = rng.uniform(-0.12, 0.12, size=2)
    radius = rng.uniform(4.0, 6.0)
    for k in range(nz):
        cx, cy = centre + drift * (k - nz / 2)
        labels[:, :, k][(x - cx) ** 2 + (y - cy) ** 2 <= radius**2] = 1
    lesion_k = int(rng.integers(nz // 4, 3 * nz // 4))
    lx, ly = centre + drift * (lesion_k - nz / 2)
    lesion_r = rng.uniform(1.8, 2.6)
    xx, yy, zz = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    blob = ((xx - lx) ** 2 + (yy - ly) ** 2 + ((zz - lesion_k) * SPACING[2]) ** 2) <= lesion_r**2
    labels[blob & (labels == 1)] = 2
    image = rng.normal(100.0, 12.0, size=shape)
    image[labels == 1] += 250.0
    image[labels == 2] += 450.0
    return image.astype(np.float32), labels


def write_dataset(root: Path, n_cases: int = 8, seed: int = 0) -> Path:
    """Write imagesTr/, labelsTr/ and dataset.json under `root`; returns root."""
    root = Path(root)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for index in range(n_cases):
        image, labels = make_case(seed + index)
        case = f"cord_{index:03d}"
        nib.save(nib.Nifti1Image(image, LAS_AFFINE), root / "imagesTr" / f"{case}_0000.nii.gz")
        nib.save(nib.Nifti1Image(labels, LAS_AFFINE), root / "labelsTr" / f"{case}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({**DATASET_JSON, "numTraining": n_cases}, indent=2))
    return root


if __name__ == "__main__":
    write_dataset(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 8)
