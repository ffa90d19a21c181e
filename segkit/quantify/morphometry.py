"""Lesion morphometry (after SCT's lesion analysis) and corpus callosum measures.

Axes come from the affine (nibabel's io_orientation): the array axis closest to the world
superior-inferior axis defines axial slices, the one closest to left-right defines sagittal
slices. Measures are axis-aligned on the voxel grid, so they are exact for non-oblique images
and an approximation for oblique ones.

Per lesion (26-connected component):
- volume_ml: voxel count x voxel volume.
- length_si_mm: number of axial slices the lesion spans x slice thickness.
- max_axial_width_mm: over axial slices, the largest left-right extent of the lesion.
- equivalent_diameter_mm: 2 * sqrt(A / pi) with A the largest axial lesion area (SCT's
  "max equivalent diameter").
- max_axial_damage_ratio (with a cord mask): over axial slices where the cord is present, the
  largest lesion area / cord area.
"""

from __future__ import annotations

import numpy as np

from segkit.io.image import voxel_volume_mm3


def _axes(affine: np.ndarray, ndim: int) -> tuple[int, int]:
    """(superior-inferior array axis, left-right array axis)."""
    from nibabel.orientations import io_orientation

    world_of_axis = io_orientation(affine)[:ndim, 0].astype(int)
    return int(np.flatnonzero(world_of_axis == 2)[0]), int(np.flatnonzero(world_of_axis == 0)[0])


def _slice_areas(mask: np.ndarray, axis: int, pixel_area: float) -> np.ndarray:
    others = tuple(a for a in range(mask.ndim) if a != axis)
    return mask.sum(axis=others) * pixel_area


def lesion_measures(lesion_mask: np.ndarray, affine: np.ndarray, spacing, cord_mask=None) -> list[dict]:
    """One dict per lesion, numbered 1.. in scan order; none for an empty mask."""
    from scipy import ndimage

    from segkit.metrics.lesionwise import connected_lesions

    if lesion_mask.ndim != 3:
        raise ValueError("lesion analysis needs a 3D mask")
    si, lr = _axes(affine, 3)
    spacing = np.asarray(spacing, dtype=np.float64)
    voxel_mm3 = voxel_volume_mm3(affine)
    pixel_area = voxel_mm3 / spacing[si]
    labelled, count = connected_lesions(lesion_mask)
    cord_areas = None if cord_mask is None else _slice_areas(cord_mask, si, pixel_area)
    rows = []
    for number, box in enumerate(ndimage.find_objects(labelled), start=1):
        lesion = labelled[box] == number
        areas = _slice_areas(lesion, si, pixel_area)
        row = {
            "lesion": number,
            "volume_ml": float(lesion.sum() * voxel_mm3 / 1000.0),
            "length_si_mm": float(np.count_nonzero(areas) * spacing[si]),
            "max_axial_width_mm": _max_width(lesion, si, lr) * float(spacing[lr]),
            "equivalent_diameter_mm": float(2.0 * np.sqrt(areas.max() / np.pi)),
        }
        if cord_areas is not None:
            row["max_axial_damage_ratio"] = _damage_ratio(areas, cord_areas[box[si]])
        rows.append(row)
    return rows


def _max_width(lesion: np.ndarray, si: int, lr: int) -> int:
    """Largest left-right extent in voxels over the axial slices."""
    widest = 0
    for index in range(lesion.shape[si]):
        axial = np.take(lesion, index, axis=si)
        lr_in_slice = lr if lr < si else lr - 1
        present = np.flatnonzero(axial.any(axis=1 - lr_in_slice))
        if present.size:
            widest = max(widest, int(present[-1] - present[0] + 1))
    return widest


def _damage_ratio(lesion_areas: np.ndarray, cord_areas: np.ndarray):
    valid = cord_areas > 0
    if not valid.any():
        return None
    return float(np.max(lesion_areas[valid] / cord_areas[valid]))


def corpus_callosum_measures(cc_mask: np.ndarray, affine: np.ndarray, spacing) -> dict:
    """Volume (mL) and the cross-sectional area (mm^2) on the mid-sagittal slice.

    The mid-sagittal slice is the sagittal slice through the mask's left-right centre of mass.
    """
    if cc_mask.ndim != 3:
        raise ValueError("corpus callosum measures need a 3D mask")
    count = int(np.count_nonzero(cc_mask))
    if count == 0:
        return {"status": "empty", "volume_ml": None, "midsagittal_slice": None, "midsagittal_area_mm2": None}
    _, lr = _axes(affine, 3)
    spacing = np.asarray(spacing, dtype=np.float64)
    voxel_mm3 = voxel_volume_mm3(affine)
    per_slice = _slice_areas(cc_mask, lr, 1.0)
    centre = int(round(float(np.dot(np.arange(per_slice.size), per_slice) / per_slice.sum())))
    return {
        "status": "ok",
        "volume_ml": count * voxel_mm3 / 1000.0,
        "midsagittal_slice": centre,
        "midsagittal_area_mm2": float(per_slice[centre] * voxel_mm3 / spacing[lr]),
    }
