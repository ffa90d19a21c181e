"""The four contrasts of a case: from four -i files (T1, T1ce, T2, FLAIR) or a BraTS case folder,
and their normalisation (METHODS.md, AutoSAM2).

A BraTS 2023 case folder holds <case>-t1n, -t1c, -t2w and -t2f images (.nii.gz or .nii); older
BraTS releases name them _t1, _t1ce, _t2 and _flair, which are accepted too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit.errors import SegkitError

CONTRAST_NAMES = ("T1", "T1ce", "T2", "FLAIR")
BRATS_SUFFIXES = (("-t1n", "_t1"), ("-t1c", "_t1ce"), ("-t2w", "_t2"), ("-t2f", "_flair"))
_EXTENSIONS = (".nii.gz", ".nii")


def is_case_folder(path: Path) -> bool:
    return Path(path).is_dir() and any(_find(Path(path), names) for names in BRATS_SUFFIXES)


def case_folder_inputs(folder: Path) -> tuple[Path, ...]:
    """The four contrast files of a BraTS case folder, in the order T1, T1ce, T2, FLAIR."""
    found = []
    for contrast, names in zip(CONTRAST_NAMES, BRATS_SUFFIXES):
        matches = _find(Path(folder), names)
        if len(matches) != 1:
            what = "no" if not matches else f"{len(matches)}"
            raise SegkitError(
                f"{folder}: {what} {contrast} image (a file ending in {' or '.join(n + '.nii.gz' for n in names)}); a BraTS "
                "case folder needs exactly one each of -t1n, -t1c, -t2w and -t2f"
            )
        found.append(matches[0])
    return tuple(found)


def _find(folder: Path, names: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and any(p.name.endswith(n + e) for n in names for e in _EXTENSIONS))


def group_cases(inputs: list[Path]) -> list[tuple[Path, ...]]:
    """One group of four contrasts per case: a case folder is one case; loose files go by fours."""
    cases: list[tuple[Path, ...]] = []
    loose: list[Path] = []
    for path in map(Path, inputs):
        if is_case_folder(path):
            cases.append(case_folder_inputs(path))
        else:
            loose.append(path)
    if len(loose) % 4:
        raise SegkitError(
            f"brats_autosam2 takes four contrasts per case, given as -i T1 -i T1ce -i T2 -i FLAIR (or -i a BraTS case "
            f"folder); got {len(loose)} image file(s): {', '.join(p.name for p in loose)}"
        )
    cases += [tuple(loose[i : i + 4]) for i in range(0, len(loose), 4)]
    if not cases:
        raise SegkitError("give the four contrasts of a case with -i T1 -i T1ce -i T2 -i FLAIR, or -i a BraTS case folder")
    return cases


def normalise_contrast(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """z-score over the voxels > 0, then clipped to the 1st/99th percentiles of the normalised
    non-zero voxels; voxels <= 0 (outside the skull-stripped brain) stay 0. float32."""
    image = np.asarray(image, dtype=np.float64)
    inside = image > 0
    out = np.zeros(image.shape, dtype=np.float32)
    if not inside.any():
        return out
    values = image[inside]
    z = (values - values.mean()) / max(float(values.std()), 1e-8)
    lo, hi = np.percentile(z, [low, high])
    out[inside] = np.clip(z, lo, hi)
    return out


def normalise_case(arrays) -> np.ndarray:
    """(4, X, Y, Z) float32 from the four contrasts, each normalised on its own."""
    return np.stack([normalise_contrast(a) for a in arrays])
