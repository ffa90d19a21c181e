"""Training data for ais_ncct: an nnU-Net v2 folder with the CT only (imagesTr/CASE_0000, labelsTr/CASE);
segkit strips the skull and builds the registered mirror of each case (cached in the run's folder),
resamples to the model spacing and normalises with the training set's foreground statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError


@dataclass
class TrainingCase:
    name: str
    channels: np.ndarray  # (2, X, Y, Z) normalised, model spacing
    label: np.ndarray  # (X, Y, Z) uint8 {0, 1}
    brain: np.ndarray  # (X, Y, Z) bool


def read_dataset(root: Path, say=lambda text: None) -> list[tuple[str, object, np.ndarray]]:
    """(case, preprocessed case, RAS label) for every case; every file is checked before any registration."""
    from segkit.engines.nnunet.dataset import validate_dataset
    from segkit.io.image import load_label_map
    from segkit.io.orientation import reorientation_to
    from segkit.tasks.ais_ncct.ct import read_ct

    summary = validate_dataset(root)
    if len(summary.channels) != 1:
        raise SegkitError(f"{root}: dataset.json declares {len(summary.channels)} channels; ais_ncct trains on the CT "
                          f"alone (channel 0) and builds the mirror channel itself")
    loaded = []
    for case in summary.cases:
        image = read_ct(Path(root) / "imagesTr" / f"{case}_0000{summary.file_ending}")
        label = load_label_map(Path(root) / "labelsTr" / f"{case}{summary.file_ending}")
        reorient = reorientation_to(image.affine, image.shape, "RAS")
        loaded.append((case, reorient, reorient.to_canonical(image.data), reorient.to_canonical(label.data)))
    return loaded


def prepare_cases(loaded, cache_dir: Path, say=lambda text: None):
    """Brain, stripped CT and registered mirror of each case (the mirror cached per case)."""
    from segkit.tasks.ais_ncct.pipeline import preprocess_case
    from segkit.tasks.ais_ncct.task import canonical_spacing

    prepared = []
    for index, (case, reorient, hu, label) in enumerate(loaded, start=1):
        pre = preprocess_case(hu, canonical_spacing(reorient), cache_dir)
        say(f"{case}: registered mirror ({index}/{len(loaded)}), residual {pre.registration['residual_hu']:.2f} HU")
        prepared.append((case, pre, (np.asarray(label) > 0).astype(np.uint8)))
    return prepared


def normalisation(prepared) -> list[dict]:
    """nnU-Net CT normalisation per channel from the training labels' foreground voxels."""
    from segkit.tasks.ais_ncct.intensity import foreground_stats

    labels = [label for _, _, label in prepared]
    return [foreground_stats([getattr(pre, name) for _, pre, _ in prepared], labels).to_dict()
            for name in ("stripped", "mirror")]


def training_cases(prepared, stats, spacing) -> list[TrainingCase]:
    from segkit.tasks.ais_ncct.intensity import resample_to_spacing
    from segkit.tasks.ais_ncct.pipeline import model_channels

    cases = []
    for case, pre, label in prepared:
        channels = model_channels(pre, spacing, stats)
        if spacing is not None:
            label = (resample_to_spacing(label.astype(np.float32), pre.spacing, spacing, order=1) >= 0.5).astype(np.uint8)
            brain = resample_to_spacing(pre.brain.astype(np.float32), pre.spacing, spacing, order=1) >= 0.5
        else:
            brain = pre.brain
        cases.append(TrainingCase(case, channels, label, brain))
    return cases


def sample_patch(case: TrainingCase, side: int, depth: int, rng: np.random.Generator, foreground: bool):
    """One (2, D, S, S) patch and its (D, S, S) label; centred on a lesion voxel when `foreground`
    (nnU-Net oversamples a third of its patches that way), anywhere inside the volume otherwise."""
    channels = np.transpose(case.channels, (0, 3, 1, 2))
    label = np.transpose(case.label, (2, 0, 1))
    size = (depth, side, side)
    pads = [(0, max(0, s - n)) for s, n in zip(size, label.shape)]
    channels = np.pad(channels, [(0, 0)] + pads)
    label = np.pad(label, pads)
    points = np.argwhere(label > 0) if foreground else np.zeros((0, 3))
    if len(points):
        centre = points[rng.integers(len(points))]
        start = [int(np.clip(c - s // 2, 0, n - s)) for c, s, n in zip(centre, size, label.shape)]
    else:
        start = [int(rng.integers(0, n - s + 1)) for s, n in zip(size, label.shape)]
    window = tuple(slice(a, a + s) for a, s in zip(start, size))
    return channels[(slice(None), *window)], label[window]


def augment(patch: np.ndarray, label: np.ndarray, rng: np.random.Generator):
    """Anterior-posterior flips, intensity scale and shift, Gaussian noise (nnU-Net-like, small). Never a
    left-right flip alone: channel 1 is the CT's own mirror, so a flip keeps both in step."""
    if rng.random() < 0.5:
        patch, label = patch[..., ::-1], label[..., ::-1]
    if rng.random() < 0.5:  # left-right: both channels together, the pair stays a CT and its mirror
        patch, label = patch[..., ::-1, :], label[..., ::-1, :]
    patch = patch * rng.uniform(0.9, 1.1) + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.15:
        patch = patch + rng.normal(0.0, 0.1, size=patch.shape)
    return np.ascontiguousarray(patch, dtype=np.float32), np.ascontiguousarray(label)
