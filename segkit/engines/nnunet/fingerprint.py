"""Foreground intensity statistics without the ignore label (nnU-Net v2's CT normalisation).

nnU-Net's fingerprint takes every voxel whose label is > 0 as foreground, so a dataset that uses
the ignore label (partial annotation: lpm_nnsam2's round 1 marks unselected slices so) feeds the
whole ignored region into the clip-and-z-score statistics of CTNormalization: on lumbar CT that
gave a mean of -394 HU (fat, air) instead of the muscle's ~45. After the fingerprint is written,
`refit_without_ignore` recomputes those statistics from the annotated voxels only (0 < label,
label != ignore), sampling like nnU-Net (FOREGROUND_SAMPLES / cases voxels per case at most, fixed seed) and rewrites the
fingerprint, so the planner copies them into plans.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FOREGROUND_SAMPLES = 10**8  # nnU-Net's DatasetFingerprintExtractor.num_foreground_voxels_for_intensitystats, over all cases


def ignore_value(dataset_json: dict) -> int | None:
    value = dataset_json.get("labels", {}).get("ignore")
    return int(value) if isinstance(value, int) else None


def refit_without_ignore(raw_dataset: Path, fingerprint_file: Path) -> bool:
    """Rewrite the fingerprint's foreground statistics from annotated voxels; False when no ignore label."""
    import nibabel as nib

    raw_dataset = Path(raw_dataset)
    meta = json.loads((raw_dataset / "dataset.json").read_text(encoding="utf-8"))
    ignore = ignore_value(meta)
    if ignore is None:
        return False
    ending = meta.get("file_ending", ".nii.gz")
    rng = np.random.default_rng(1234)
    samples = {channel: [] for channel in meta["channel_names"]}
    label_files = sorted((raw_dataset / "labelsTr").glob(f"*{ending}"))
    per_case = FOREGROUND_SAMPLES // max(1, len(label_files))
    for label_file in label_files:
        labels = np.asarray(nib.load(str(label_file)).dataobj)
        annotated = (labels > 0) & (labels != ignore)
        case = label_file.name[: -len(ending)]
        for channel in samples:
            image = np.asarray(nib.load(str(raw_dataset / "imagesTr" / f"{case}_{int(channel):04d}{ending}")).dataobj)
            values = image[annotated].astype(np.float64)
            if values.size > per_case:
                values = rng.choice(values, per_case, replace=False)
            samples[channel].append(values)
    fingerprint = json.loads(Path(fingerprint_file).read_text(encoding="utf-8"))
    fingerprint["foreground_intensity_properties_per_channel"] = {
        channel: _statistics(np.concatenate(parts)) for channel, parts in samples.items() if sum(p.size for p in parts)
    }
    Path(fingerprint_file).write_text(json.dumps(fingerprint, indent=4), encoding="utf-8")
    return True


def _statistics(values: np.ndarray) -> dict:
    """The keys nnU-Net's fingerprint writes for each channel."""
    return {
        "max": float(values.max()), "mean": float(values.mean()), "median": float(np.median(values)),
        "min": float(values.min()), "percentile_00_5": float(np.percentile(values, 0.5)),
        "percentile_99_5": float(np.percentile(values, 99.5)), "std": float(values.std()),
    }
