"""CT in, brain out: Hounsfield units, the "is this CT?" check and skull stripping, each alone.

DICOM series are read by SimpleITK, which applies RescaleSlope/RescaleIntercept; NIfTI by nibabel,
which applies scl_slope/scl_inter. `to_hounsfield` is the same rule for raw stored values.
"""

from __future__ import annotations

import numpy as np

from segkit.errors import SegkitError

AIR_HU = -500.0  # anything below is air (or the scanner's padding)
BONE_HU = 300.0
MIN_AIR_FRACTION = 0.02
MIN_BONE_FRACTION = 0.0005
HU_LIMITS = (-3100.0, 4100.0)  # 12-bit CT with the usual offsets; beyond is not HU
BRAIN_HU = (-15.0, 100.0)  # CSF to grey matter (and fresh blood) on NCCT


class NotCTError(SegkitError):
    """An image whose values are not plausible Hounsfield units of a head CT."""


def to_hounsfield(raw: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> np.ndarray:
    """HU = stored value x RescaleSlope + RescaleIntercept (DICOM PS3.3 C.11.1.1.2)."""
    return np.asarray(raw, dtype=np.float32) * np.float32(slope) + np.float32(intercept)


def read_ct(path, series: str | None = None):
    """A NIfTI file or DICOM series folder as a segkit Image of float32 HU, refused if not 3D CT."""
    from segkit.io.image import load_image

    image = load_image(path, allowed_ndim=(2, 3), series=series)
    if image.data.ndim != 3:
        raise NotCTError(f"{path}: a 2D image; ais_ncct needs a 3D head CT volume")
    check_ct(image.data, path)
    return image


def check_ct(hu: np.ndarray, path="image") -> None:
    """Refuse values that are not HU of a head CT: it must hold air and bone, within 12-bit limits."""
    hu = np.asarray(hu)
    low, high = float(hu.min()), float(hu.max())
    if low < HU_LIMITS[0] or high > HU_LIMITS[1]:
        raise NotCTError(f"{path}: values {low:g}..{high:g} are not Hounsfield units (expected within "
                         f"{HU_LIMITS[0]:g}..{HU_LIMITS[1]:g}); give a non-contrast CT in HU")
    air = float((hu < AIR_HU).mean())
    bone = float((hu > BONE_HU).mean())
    if air < MIN_AIR_FRACTION or bone < MIN_BONE_FRACTION:
        raise NotCTError(
            f"{path}: not a head CT in HU (air below {AIR_HU:g} HU in {100 * air:.1f}% of voxels, bone above "
            f"{BONE_HU:g} HU in {100 * bone:.2f}%); give the unstripped non-contrast CT with its rescale "
            f"slope/intercept applied")


def strip_skull(hu: np.ndarray, spacing, slab: int = 32) -> np.ndarray:
    """Brain mask of an NCCT: brain-range HU, opened to cut thin bridges, largest component, holes filled.

    The skull (bone) separates brain from scalp; the opening (a ~3 mm ball) breaks the thin links
    partial-volume voxels make through it, and the largest 3D component is the brain. Every volume
    held is bool except the component labels (int32, freed as soon as the brain is picked), and the
    voxel-wise steps run `slab` slices at a time: a 512x512x800 CT needs no int64 or float copy.
    """
    from scipy import ndimage

    tissue = hu_between(hu, *BRAIN_HU, slab)
    ball = _ball(spacing, radius_mm=3.0)
    labels, count = ndimage.label(ndimage.binary_opening(tissue, structure=ball))
    if count == 0:
        raise NotCTError("skull stripping found no brain tissue (no voxels in the brain's HU range)")
    brain = _largest_label(labels, count, slab)
    del labels
    brain = ndimage.binary_dilation(brain, structure=ball)
    np.logical_and(brain, tissue, out=brain)  # give back the opened rim, in place
    del tissue
    for z in range(brain.shape[2]):  # ventricles and sulci stay inside
        brain[:, :, z] = ndimage.binary_fill_holes(brain[:, :, z])
    return brain


def hu_between(hu: np.ndarray, low: float, high: float, slab: int = 32) -> np.ndarray:
    """bool: low < hu < high, compared a few slices at a time (no volume-sized temporaries)."""
    inside = np.empty(hu.shape, dtype=bool)
    for start in range(0, hu.shape[2], slab):
        part = hu[:, :, start:start + slab]
        np.logical_and(part > low, part < high, out=inside[:, :, start:start + slab])
    return inside


def _largest_label(labels: np.ndarray, count: int, slab: int) -> np.ndarray:
    """bool mask of the largest non-zero label. The sizes are counted per slab because np.bincount
    converts its whole input to int64 (twice the int32 labels); the first largest wins ties, as argmax."""
    sizes = np.zeros(count + 1, dtype=np.int64)
    for start in range(0, labels.shape[2], slab):
        sizes += np.bincount(labels[:, :, start:start + slab].ravel(), minlength=count + 1)
    largest = 1 + int(np.argmax(sizes[1:]))
    mask = np.empty(labels.shape, dtype=bool)
    for start in range(0, labels.shape[2], slab):
        np.equal(labels[:, :, start:start + slab], largest, out=mask[:, :, start:start + slab])
    return mask


def _ball(spacing, radius_mm: float) -> np.ndarray:
    radius = [max(1, int(round(radius_mm / s))) if s < radius_mm else 0 for s in spacing]
    grids = np.meshgrid(*[np.arange(-r, r + 1) * s for r, s in zip(radius, spacing)], indexing="ij")
    return sum(g ** 2 for g in grids) <= radius_mm ** 2 + 1e-6


def apply_brain_mask(hu: np.ndarray, brain: np.ndarray, background: float = 0.0) -> np.ndarray:
    """The skull-stripped CT: HU inside the brain, `background` elsewhere (upstream's stripped images
    hold 0). float32, or int16 for an int16 CT (`compact_hu`): the same numbers in half the memory."""
    keep_int16 = hu.dtype == np.int16 and float(background).is_integer()
    stripped = np.full(hu.shape, background, dtype=np.int16 if keep_int16 else np.float32)
    np.copyto(stripped, hu, where=brain, casting="unsafe")
    return stripped


def compact_hu(hu: np.ndarray, slab: int = 16) -> np.ndarray:
    """`hu` as int16 when every value is a whole number in int16's range (a CT's HU usually are: stored
    integers x slope 1 + an integer intercept), else unchanged. Checked a few slices at a time, so the
    check itself needs no volume-sized temporaries; stripping and registration give the same numbers
    on either (every step converts to float32 or compares)."""
    if hu.dtype == np.int16 or hu.ndim != 3:
        return hu
    limits = np.iinfo(np.int16)
    for start in range(0, hu.shape[2], slab):
        part = hu[:, :, start:start + slab]
        if not (np.array_equal(part, np.round(part)) and part.min() >= limits.min and part.max() <= limits.max):
            return hu
    return hu.astype(np.int16)
