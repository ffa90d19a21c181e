"""Training data for ais_ncct: an nnU-Net v2 folder with the CT only (imagesTr/CASE_0000, labelsTr/CASE).
segkit strips the skull and builds the registered mirror of each case (cached in the run's folder),
then writes the two-channel nnU-Net dataset that nnU-Net plans, preprocesses and trains on.

Axes: segkit's network sees (S-I, R-L, A-P) patches; nnU-Net reads a NIfTI's array as (k, j, i). The
two-channel images are therefore written with their first two voxel axes swapped (A-P, R-L, S-I;
the affine's columns swapped with them, so every voxel keeps its place in the world), and nnU-Net's
arrays come out as (S-I, R-L, A-P): the layout segment uses with the same weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit.errors import SegkitError


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


CHANNELS = {"0": "CT", "1": "CT"}  # nnU-Net picks CTNormalization from the channel name, per channel
LABELS = {"background": 0, "lesion": 1}


def write_nnunet_dataset(prepared, folder: Path) -> Path:
    """DatasetNNN_Name/: imagesTr/CASE_0000 (skull-stripped CT), CASE_0001 (registered mirror),
    labelsTr/CASE, dataset.json; every file written atomically, so a --resume rewrites the same."""
    import json

    from segkit.io.writer import atomic_write_text

    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for case, pre, label in prepared:
        affine = _swapped_affine(pre)
        _save(folder / "imagesTr" / f"{case}_0000.nii.gz", pre.whole(pre.stripped), affine)
        _save(folder / "imagesTr" / f"{case}_0001.nii.gz", pre.whole(pre.mirror), affine)
        _save(folder / "labelsTr" / f"{case}.nii.gz", label.astype(np.uint8), affine)
    description = {"channel_names": CHANNELS, "labels": LABELS, "numTraining": len(prepared),
                   "file_ending": ".nii.gz", "name": folder.name,
                   "description": "segkit ais_ncct: skull-stripped CT and its registered left-right mirror"}
    atomic_write_text(folder / "dataset.json", json.dumps(description, indent=2))
    return folder


def _swapped_affine(pre) -> np.ndarray:
    affine = np.diag([*pre.spacing, 1.0])  # the RAS grid of the prepared case (only spacing matters to nnU-Net)
    return affine[:, [1, 0, 2, 3]]


def _save(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    from segkit.io.writer import save_nifti

    save_nifti(np.ascontiguousarray(np.swapaxes(array, 0, 1)), affine, path)


def validation_split(names: list[str]) -> list[dict]:
    """One split for nnU-Net's splits_final.json: the last fifth of the cases (at least one) held out."""
    held_out = max(1, len(names) // 5)
    return [{"train": names[:-held_out], "val": names[-held_out:]}]
