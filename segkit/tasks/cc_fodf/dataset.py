"""cc_fodf training data: cases of an nnU-Net-style folder (peaks or DWI with gradients, and a label),
loaded as RAS cubes of the model's slice size, and the train/validation split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError
from segkit.tasks.cc_fodf.peak_frames import canonical_signs
from segkit.tasks.facts import orientation


@dataclass
class Case:
    name: str
    image: Path
    label: Path
    bval: Path | None = None
    bvec: Path | None = None

    @property
    def is_dwi(self) -> bool:
        return self.bval is not None


@dataclass
class Subject:
    name: str
    peaks: np.ndarray  # (S, S, S, 9) float32, RAS canonical, fitted to the slice-size cube
    mask: np.ndarray  # (S, S, S) uint8
    source_shape: tuple[int, ...]


def discover_cases(root: Path | str) -> list[Case]:
    """Pair labelsTr/<case>.nii.gz with imagesTr/<case>_0000.nii.gz (or <case>.nii.gz) and, for DWI,
    the .bval/.bvec beside the image (same stem). No dataset.json needed: peaks folders have none."""
    from segkit.engines.nnunet.dataset import list_cases

    raw = list_cases(root, (0,), bare_image=True)
    if not raw:
        raise SegkitError(f"{Path(root) / 'labelsTr'} holds no .nii.gz label files")
    return [_with_gradients(case.name, case.images[0], case.label) for case in raw]


def _with_gradients(name: str, image: Path, label: Path) -> Case:
    stem = image.name[: -len(".nii.gz")] if image.name.endswith(".nii.gz") else image.stem
    bval, bvec = image.with_name(f"{stem}.bval"), image.with_name(f"{stem}.bvec")
    if bval.is_file() != bvec.is_file():
        raise SegkitError(f"{image}: found only one of {bval.name} / {bvec.name}; give both for DWI")
    if bval.is_file():
        return Case(name, image, label, bval, bvec)
    return Case(name, image, label)


def load_subject(case: Case, slice_size: int, cache_dir: Path | None = None) -> Subject:
    """Peaks and mask in RAS canonical orientation, fitted to the slice-size cube around the brain."""
    from segkit.io import load_label_map
    from segkit.tasks.cc_fodf.cube import canonical_peaks, fit_to_cube

    peaks, reference = canonical_peaks(case.image, case.bval, case.bvec, cache=_cache_path(cache_dir, case))
    label = load_label_map(case.label, allowed_ndim=(3,))
    if label.spatial_shape != reference.spatial_shape or not np.allclose(label.affine, reference.affine, atol=1e-3):
        raise SegkitError(f"{case.label}: shape/affine differ from its image {case.image}; labels must share the image grid")
    from segkit.io import reorientation_to

    mask = reorientation_to(label.affine, label.spatial_shape, orientation("cc_fodf")).to_canonical(np.asarray(label.data) > 0)
    cube_peaks, box = fit_to_cube(peaks, slice_size)
    cube_mask, _ = fit_to_cube(mask.astype(np.uint8), slice_size, box=box)
    # signs set before augmentation, so its interpolation never averages a peak with its negative
    cube_peaks = canonical_signs(cube_peaks.astype(np.float32))
    return Subject(case.name, cube_peaks, cube_mask.astype(np.uint8), tuple(peaks.shape[:3]))


def _cache_path(cache_dir: Path | None, case: Case) -> Path | None:
    if cache_dir is None or not case.is_dwi:
        return None
    return Path(cache_dir) / f"{case.name}.npz"


def split_cases(cases: list[Case], val_fraction: float, val_names: list[str], seed: int) -> tuple[list[Case], list[Case]]:
    if val_names:
        unknown = sorted(set(val_names) - {c.name for c in cases})
        if unknown:
            raise SegkitError(f"--val-case names not in the dataset: {', '.join(unknown)}")
        val = [c for c in cases if c.name in val_names]
    else:
        if len(cases) < 2:
            raise SegkitError("training needs at least 2 cases (one is held out for validation)")
        n_val = max(1, int(round(len(cases) * val_fraction)))
        order = np.random.default_rng(seed).permutation(len(cases))
        val = [cases[i] for i in sorted(order[:n_val])]
    train = [c for c in cases if c not in val]
    if not train:
        raise SegkitError("no training cases left after the validation split")
    return train, val
