"""Do two images share one voxel grid? The one check (and the one tolerance) every command uses.
Also the box of a mask's voxels on its grid (mask_box), which several steps crop to.

Two images share a grid when their (spatial) shapes are equal and their affines agree entry by
entry to within GRID_TOLERANCE_MM. The tolerance is absolute: headers store affines as float32,
so the same grid written by two tools can differ in the last digits, while any real shift or
rotation of a voxel grid is far larger than a micrometre.
"""

from __future__ import annotations

import numpy as np

from segkit.errors import ImageError

GRID_TOLERANCE_MM = 1e-3


def mask_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box (one slice per axis) that holds every non-zero voxel of `mask`; None when it
    has none. One any() per axis: no index arrays of every voxel."""
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def affine_difference_mm(image, reference) -> float:
    """The largest absolute difference between the two affines' entries."""
    return float(np.max(np.abs(np.asarray(image.affine) - np.asarray(reference.affine))))


def _grid_shape(image, spatial_only: bool) -> tuple[int, ...]:
    shape = tuple(image.shape)
    return shape[: min(len(shape), 3)] if spatial_only else shape


def same_grid(image, reference, *, spatial_only: bool = False) -> bool:
    """Same shape (only the spatial axes when `spatial_only`) and affines within the tolerance."""
    if _grid_shape(image, spatial_only) != _grid_shape(reference, spatial_only):
        return False
    return affine_difference_mm(image, reference) <= GRID_TOLERANCE_MM


def check_same_grid(
    image,
    reference,
    what: str,
    *,
    reference_what: str = "the reference",
    fix: str = "resample it onto the reference grid first",
    spatial_only: bool = False,
    error: type[Exception] = ImageError,
) -> None:
    """Raise `error` naming `image` and what differs (shape or affine) when the grids differ.

    The message reads "<image path>: <what> shape S differs from <reference_what> <path> S'; <fix>"
    (or "... affine differs from ..."), so each caller names its own roles and remedy.
    """
    shape, reference_shape = _grid_shape(image, spatial_only), _grid_shape(reference, spatial_only)
    subject = f"{image.path}: {what} " if what else f"{image.path}: "
    if shape != reference_shape:
        raise error(f"{subject}shape {shape} differs from {reference_what} {reference.path} {reference_shape}; {fix}")
    if affine_difference_mm(image, reference) > GRID_TOLERANCE_MM:
        raise error(f"{subject}affine differs from {reference_what} {reference.path}; {fix}")
