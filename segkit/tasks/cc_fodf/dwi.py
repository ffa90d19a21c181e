"""Diffusion gradient tables for cc_fodf: FSL .bval/.bvec files, their frame, shells and SH order.

Conventions (the ones MRtrix and dipy differ on):

- FSL bvecs are unit vectors relative to the image's voxel axes, in FSL's *radiological* voxel
  convention: when the NIfTI affine has a positive determinant (neurological storage, e.g. RAS)
  the x component is negated relative to the first array axis. MRtrix applies this flip when it
  imports FSL bvecs; dipy does not (it takes bvecs as voxel-axis directions as they are).
- segkit converts FSL bvecs to *voxel-axis* bvecs (the frame dipy assumes) with
  `fsl_bvecs_to_voxel`, so dipy's peaks come out in the array's voxel axes, whatever the storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import ImageError, SegkitError

B0_THRESHOLD = 50.0  # s/mm^2: volumes at or below this b-value count as b=0 (dipy's default)
SHELL_TOLERANCE = 100.0  # b-values closer than this belong to the same shell
TARGET_BVALUE = 1000.0  # single-shell CSD runs on the shell closest to this b-value
MAX_SH_ORDER = 8
MIN_DW_DIRECTIONS = 6  # SH order 2 has 6 coefficients


class GradientError(SegkitError):
    """A .bval/.bvec file is missing, malformed or does not match the DWI."""


class DwiInputError(ImageError):
    """The DWI cannot be used for CSD (no b=0, no diffusion-weighted volumes, too few directions)."""


@dataclass(frozen=True, eq=False)
class Gradients:
    """b-values (N,) and unit gradient directions (N, 3) in FSL convention (zeros for b=0)."""

    bvals: np.ndarray
    bvecs: np.ndarray

    @property
    def is_b0(self) -> np.ndarray:
        return self.bvals <= B0_THRESHOLD

    def __len__(self) -> int:
        return len(self.bvals)


# --------------------------------------------------------------------------------------- files


def read_fsl_gradients(bval_path: Path | str, bvec_path: Path | str, n_volumes: int | None = None,
                       dwi_path=None) -> Gradients:
    """Read FSL .bval (one row of N numbers) and .bvec (3 rows of N; N rows of 3 also accepted).

    With `n_volumes` (the DWI's), each file is checked against it on its own, so a count mismatch
    names the file that is wrong (not the one that disagrees with it).
    """
    bvals = _read_numbers(bval_path)
    if bvals.ndim == 2 and 1 in bvals.shape:
        bvals = bvals.ravel()
    if bvals.ndim != 1:
        raise GradientError(f"{bval_path}: expected one row of b-values, got a table of shape {bvals.shape}")
    if (bvals < 0).any():
        raise GradientError(f"{bval_path}: has negative b-values; b-values are in s/mm^2 and >= 0")
    if n_volumes is not None and len(bvals) != n_volumes:
        raise GradientError(
            f"{bval_path}: has {len(bvals)} b-values but {dwi_path or 'the DWI'} has {n_volumes} volumes; "
            "give the .bval file written with this DWI (one b-value per volume)"
        )
    bvecs = _bvecs_as_rows(_read_numbers(bvec_path), len(bvals), bvec_path)
    return Gradients(bvals=bvals.astype(np.float64), bvecs=_unit_directions(bvecs, bvals, bvec_path))


def write_fsl_gradients(gradients: Gradients, bval_path: Path | str, bvec_path: Path | str) -> None:
    """Write FSL files atomically: bvals as one row of integers-or-floats, bvecs as 3 rows."""
    from segkit.io.writer import atomic_write_text

    atomic_write_text(bval_path, " ".join(_format_number(b) for b in gradients.bvals) + "\n")
    rows = [" ".join(f"{v:.8f}" for v in gradients.bvecs[:, axis]) for axis in range(3)]
    atomic_write_text(bvec_path, "\n".join(rows) + "\n")


def check_matches_volumes(gradients: Gradients, n_volumes: int, dwi_path, bval_path, bvec_path) -> None:
    if len(gradients) != n_volumes:
        raise GradientError(
            f"{bval_path} / {bvec_path}: {len(gradients)} gradient entries but {dwi_path} has {n_volumes} volumes;"
            " give the .bval/.bvec files written with this DWI"
        )


def _read_numbers(path: Path | str) -> np.ndarray:
    path = Path(path).expanduser()
    if not path.is_file():
        raise GradientError(f"{path}: gradient file not found")
    try:
        rows = [line.replace(",", " ").split() for line in path.read_text(encoding="utf-8").splitlines()]
        rows = [[float(v) for v in row] for row in rows if row]
    except (ValueError, UnicodeDecodeError) as exc:
        raise GradientError(f"{path}: cannot parse numbers ({exc}); expected an FSL .bval/.bvec text file") from exc
    if not rows:
        raise GradientError(f"{path}: gradient file is empty")
    if len({len(row) for row in rows}) != 1:
        raise GradientError(f"{path}: rows have different lengths; expected an FSL .bval/.bvec text file")
    values = np.array(rows, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise GradientError(f"{path}: contains NaN or infinite values")
    return values[0] if len(rows) == 1 else values


def _bvecs_as_rows(values: np.ndarray, n: int, path) -> np.ndarray:
    """(N, 3) bvecs from FSL's 3 x N layout (N x 3 accepted too, as dipy does)."""
    if values.ndim == 2 and values.shape == (3, n):
        return values.T.copy()
    if values.ndim == 2 and values.shape == (n, 3):
        return values.copy()
    raise GradientError(
        f"{path}: expected 3 rows (x, y, z) of {n} values (one direction per volume), got shape {values.shape}"
    )


def _unit_directions(bvecs: np.ndarray, bvals: np.ndarray, path) -> np.ndarray:
    norms = np.linalg.norm(bvecs, axis=1)
    weighted = bvals > B0_THRESHOLD
    if (norms[weighted] < 1e-3).any():
        first = int(np.flatnonzero(weighted & (norms < 1e-3))[0])
        raise GradientError(f"{path}: volume {first} has b={bvals[first]:g} but a zero gradient direction")
    unit = np.zeros_like(bvecs)
    unit[weighted] = bvecs[weighted] / norms[weighted, None]
    return unit


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# -------------------------------------------------------------------------------- frames


def fsl_bvecs_to_voxel(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """FSL bvecs -> directions along the array's voxel axes (what dipy assumes).

    FSL's frame is radiological: with a positive-determinant affine the first axis is flipped.
    """
    voxel = np.array(bvecs, dtype=np.float64, copy=True)
    if np.linalg.det(np.asarray(affine)[:3, :3]) > 0:
        voxel[:, 0] = -voxel[:, 0]
    return voxel


def voxel_bvecs_to_fsl(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of `fsl_bvecs_to_voxel` (the flip is its own inverse)."""
    return fsl_bvecs_to_voxel(bvecs, affine)


# -------------------------------------------------------------------------------- shells


def shell_values(bvals: np.ndarray) -> list[float]:
    """Mean b-value of each diffusion-weighted shell (b-values within SHELL_TOLERANCE grouped)."""
    weighted = np.sort(bvals[bvals > B0_THRESHOLD])
    shells: list[list[float]] = []
    for b in weighted:
        if shells and b - shells[-1][-1] < SHELL_TOLERANCE:
            shells[-1].append(float(b))
        else:
            shells.append([float(b)])
    return [float(np.mean(s)) for s in shells]


def select_single_shell(gradients: Gradients, dwi_path="the DWI") -> tuple[np.ndarray, float]:
    """Indices of the b=0 volumes plus the shell closest to b=1000, and that shell's b-value.

    Multi-shell data is reduced to this one shell (single-shell, single-tissue CSD), as the
    issue allows; the other shells are ignored.
    """
    n_b0 = int(gradients.is_b0.sum())
    shells = shell_values(gradients.bvals)
    if not shells:
        raise DwiInputError(
            f"{dwi_path}: no diffusion-weighted volumes (every b-value <= {B0_THRESHOLD:g}); "
            "task cc_fodf needs a DWI with b~1000 volumes, or a 4D peaks file"
        )
    if n_b0 == 0:
        raise DwiInputError(
            f"{dwi_path}: no b=0 volume (every b-value > {B0_THRESHOLD:g}); CSD needs at least one b=0 volume"
        )
    shell = min(shells, key=lambda s: (abs(s - TARGET_BVALUE), s))
    in_shell = np.abs(gradients.bvals - shell) < SHELL_TOLERANCE
    in_shell &= ~gradients.is_b0
    return np.flatnonzero(gradients.is_b0 | in_shell), shell


def count_unique_directions(bvecs: np.ndarray, tolerance_deg: float = 1.0) -> int:
    """Distinct gradient directions, treating g and -g as the same (the signal is antipodal)."""
    kept: list[np.ndarray] = []
    cos_tol = np.cos(np.deg2rad(tolerance_deg))
    for g in bvecs:
        if all(abs(float(g @ k)) < cos_tol for k in kept):
            kept.append(g)
    return len(kept)


def sh_order_for(n_directions: int) -> int:
    """Largest even SH order l with (l+1)(l+2)/2 <= n_directions, capped at 8.

    So 6-14 directions give 2, 15-27 give 4, 28-44 give 6, 45 and more give 8. Fewer than 6
    directions cannot support even order 2.
    """
    if n_directions < MIN_DW_DIRECTIONS:
        raise ValueError(f"need at least {MIN_DW_DIRECTIONS} directions, got {n_directions}")
    order = 2
    while order + 2 <= MAX_SH_ORDER and (order + 3) * (order + 4) // 2 <= n_directions:
        order += 2
    return order
