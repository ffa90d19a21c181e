"""Box prompts for medsam: from text (voxel indices or world mm) or from a coarse mask.

A `Box` holds inclusive voxel indices in the image's own array order, one (lo, hi) pair per array
axis. A 2D box given for one slice of a 3D image (``--slice K --axis A``) becomes a 3D box whose
range along A is just K, so every prompt reaching the runner has the image's dimensionality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import PromptError


@dataclass(frozen=True)
class Box:
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    source: str = "box"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lo", tuple(int(v) for v in self.lo))
        object.__setattr__(self, "hi", tuple(int(v) for v in self.hi))
        if len(self.lo) != len(self.hi) or len(self.lo) not in (2, 3):
            raise ValueError(f"a box needs 2 or 3 (lo, hi) pairs, got lo={self.lo} hi={self.hi}")

    @property
    def ndim(self) -> int:
        return len(self.lo)

    @classmethod
    def from_corners(cls, values, source: str = "box") -> "Box":
        """(i0, j0[, k0], i1, j1[, k1]) -> Box."""
        values = [int(v) for v in values]
        half = len(values) // 2
        return cls(tuple(values[:half]), tuple(values[half:]), source)

    def corners(self) -> list[int]:
        return [*self.lo, *self.hi]

    def to_dict(self) -> dict:
        return {"source": self.source, "lo": list(self.lo), "hi": list(self.hi), "box": self.corners()}

    def in_plane(self, slice_axis: int) -> tuple[int, int, int, int]:
        """(r0, c0, r1, c1) on slices taken along slice_axis (rows/cols = remaining axes, in order)."""
        if self.ndim == 2:
            return self.lo[0], self.lo[1], self.hi[0], self.hi[1]
        rows, cols = (a for a in range(3) if a != slice_axis)
        return self.lo[rows], self.lo[cols], self.hi[rows], self.hi[cols]


def check_box_inside(box: Box, image_shape: tuple[int, ...], label: str) -> Box:
    """Raise a one-line PromptError when the box is inverted/empty or leaves the image."""
    if box.ndim != len(image_shape):
        raise PromptError(f"{label}: a {box.ndim}D box cannot prompt a {len(image_shape)}D image of shape {tuple(image_shape)}")
    for axis, (lo, hi, size) in enumerate(zip(box.lo, box.hi, image_shape)):
        if lo > hi:
            raise PromptError(f"{label}: the box is empty along axis {axis} (min {lo} > max {hi}); give min before max")
        if lo < 0 or hi >= size:
            raise PromptError(
                f"{label}: the box runs outside the image along axis {axis} ({lo}..{hi}, valid 0..{size - 1}); "
                f"image shape is {tuple(image_shape)}"
            )
    if sum(hi > lo for lo, hi in zip(box.lo, box.hi)) < 2:  # a point or a line: LiteMedSAM returns nothing
        raise PromptError(f"{label}: the box has no area ({list(box.lo)}..{list(box.hi)}); it must span "
                          "at least two voxels along two axes")
    return box


def _numbers(text: str, label: str, kind=int) -> list:
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    try:
        return [_as_int(p) if kind is int else float(p) for p in parts]
    except ValueError:
        wanted = "integer voxel indices" if kind is int else "numbers in mm"
        raise PromptError(f"{label}: expected comma-separated {wanted}, got {text!r}") from None


def _as_int(part: str) -> int:
    value = float(part)  # accepts "12" and "12.0" but not "12.5"
    if not math.isfinite(value) or value != int(value):
        raise ValueError(part)
    return int(value)


def parse_box(
    text: str, image_shape: tuple[int, ...], *, slice_axis: int = 2, slice_index: int | None = None
) -> Box:
    """Parse ``--box``: "i0,j0,i1,j1" (2D image, or one slice with slice_index) or "i0,j0,k0,i1,j1,k1".

    For a slice, i/j are the slice's own row/column indices: the two array axes left once
    slice_axis is removed, in order.
    """
    label = f"--box {text}"
    values = _numbers(text, label)
    ndim = len(image_shape)
    if ndim == 2 or slice_index is not None:
        if len(values) != 4:
            where = "a 2D image" if ndim == 2 else f"slice {slice_index}"
            raise PromptError(f"{label}: {where} takes 4 integers i0,j0,i1,j1, got {len(values)}")
        if ndim == 2:
            return check_box_inside(Box.from_corners(values), image_shape, label)
        return _slice_box(values, image_shape, slice_axis, slice_index, label)
    if len(values) != 6:
        raise PromptError(
            f"{label}: a 3D image takes 6 integers i0,j0,k0,i1,j1,k1 (or 4 with --slice K), got {len(values)}"
        )
    return check_box_inside(Box.from_corners(values), image_shape, label)


def _slice_box(values, image_shape, slice_axis: int, slice_index: int, label: str, source: str = "box") -> Box:
    check_slice(slice_index, slice_axis, image_shape)
    rows, cols = (a for a in range(3) if a != slice_axis)
    lo, hi = [0, 0, 0], [0, 0, 0]
    lo[rows], lo[cols], hi[rows], hi[cols] = values
    lo[slice_axis] = hi[slice_axis] = slice_index
    return check_box_inside(Box(tuple(lo), tuple(hi), source), image_shape, label)


def check_slice(slice_index: int, slice_axis: int, image_shape: tuple[int, ...]) -> None:
    if len(image_shape) != 3:
        raise PromptError(f"--slice only applies to 3D images; this image is {len(image_shape)}D")
    if slice_axis not in (0, 1, 2):
        raise PromptError(f"--axis {slice_axis}: must be 0, 1 or 2")
    size = image_shape[slice_axis]
    if not 0 <= slice_index < size:
        raise PromptError(f"--slice {slice_index} is outside axis {slice_axis} (valid 0..{size - 1})")


def box_from_mm(corner_a_mm, corner_b_mm, affine: np.ndarray, image_shape: tuple[int, ...], label: str = "--box-mm") -> Box:
    """World (RAS mm) corners of an axis-aligned box -> the voxel box that covers it.

    All 8 corners go through the inverse affine (the image may be oblique or flipped); the voxel
    range rounds outward (floor of the minimum, ceil of the maximum) and is clipped to the image.
    A box that misses the image entirely is an error.
    """
    a, b = np.asarray(corner_a_mm, float), np.asarray(corner_b_mm, float)
    corners = np.array([[x, y, z] for x in (a[0], b[0]) for y in (a[1], b[1]) for z in (a[2], b[2])])
    voxels = (np.linalg.inv(affine) @ np.c_[corners, np.ones(8)].T)[:3].T
    ndim = len(image_shape)
    low = np.floor(voxels.min(axis=0)[:ndim] + 1e-6).astype(int)
    high = np.ceil(voxels.max(axis=0)[:ndim] - 1e-6).astype(int)
    shape = np.asarray(image_shape)
    if np.any(high < 0) or np.any(low > shape - 1):
        raise PromptError(
            f"{label}: the box lies outside the image (voxel range {low.tolist()}..{high.tolist()}, "
            f"image shape {tuple(image_shape)}); check the coordinates are world RAS mm"
        )
    low, high = np.clip(low, 0, shape - 1), np.clip(high, 0, shape - 1)
    return Box(tuple(low), tuple(high), source="box-mm")


def parse_box_mm(text: str, affine: np.ndarray, image_shape: tuple[int, ...]) -> Box:
    """Parse ``--box-mm``: "x0,y0,z0,x1,y1,z1" (world RAS mm), or "x0,y0,x1,y1" on a 2D image."""
    label = f"--box-mm {text}"
    values = _numbers(text, label, kind=float)
    if len(image_shape) == 2 and len(values) == 4:
        plane_z = float((affine @ [0, 0, 0, 1])[2])  # the world z of the image plane
        values = [values[0], values[1], plane_z, values[2], values[3], plane_z]
    if len(values) != 6:
        raise PromptError(f"{label}: expected 6 numbers x0,y0,z0,x1,y1,z1 in mm (4 on a 2D image), got {len(values)}")
    if any(not math.isfinite(v) for v in values):
        raise PromptError(f"{label}: coordinates must be finite numbers")
    return box_from_mm(values[:3], values[3:], affine, image_shape, label)


def boxes_from_mask(mask: np.ndarray, *, label: str = "--prompt-mask") -> list[Box]:
    """One box per label value of a multi-label mask, or per 26-connected component of a binary one.

    (8-connected in 2D.) An empty mask is an error: it gives nothing to prompt with.
    """
    from scipy import ndimage

    mask = np.asarray(mask)
    values = np.unique(mask[mask != 0])
    if values.size == 0:
        raise PromptError(f"{label}: the mask is empty; it needs at least one non-zero voxel")
    if values.size > 1:
        regions = ndimage.find_objects(np.where(mask != 0, mask, 0).astype(np.int64))
    else:
        structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
        components, _ = ndimage.label(mask != 0, structure=structure)
        regions = ndimage.find_objects(components)
    return [
        Box(tuple(s.start for s in region), tuple(s.stop - 1 for s in region), source="prompt-mask")
        for region in regions
        if region is not None
    ]


def collect_boxes(
    image,
    *,
    boxes=(),
    boxes_mm=(),
    prompt_mask: Path | str | None = None,
    slice_index: int | None = None,
    axis: int = 2,
) -> list[Box]:
    """All prompts of one ``segkit segment -task medsam`` call, validated against `image` (segkit.io.Image)."""
    shape = tuple(image.shape)
    if slice_index is not None:
        check_slice(slice_index, axis, shape)
    found = [parse_box(text, shape, slice_axis=axis, slice_index=slice_index) for text in boxes or ()]
    for text in boxes_mm or ():
        box = parse_box_mm(text, image.affine, shape)
        found.append(_restrict_to_slice(box, axis, slice_index) if slice_index is not None else box)
    if prompt_mask is not None:
        found.extend(_mask_boxes(image, Path(prompt_mask), axis, slice_index))
    if not found:
        raise PromptError("medsam needs a prompt: give --box, --box-mm or --prompt-mask")
    return found


def _restrict_to_slice(box: Box, axis: int, slice_index: int) -> Box:
    if not box.lo[axis] <= slice_index <= box.hi[axis]:
        raise PromptError(f"--box-mm does not reach --slice {slice_index} (it spans {box.lo[axis]}..{box.hi[axis]} on axis {axis})")
    lo, hi = list(box.lo), list(box.hi)
    lo[axis] = hi[axis] = slice_index
    return Box(tuple(lo), tuple(hi), box.source)


def _mask_boxes(image, path: Path, axis: int, slice_index: int | None) -> list[Box]:
    from segkit.io.image import load_label_map

    mask = load_label_map(path, allowed_ndim=(image.ndim,))
    label = f"--prompt-mask {path}"
    if tuple(mask.shape) != tuple(image.shape):
        raise PromptError(f"{label}: mask shape {tuple(mask.shape)} differs from the image's {tuple(image.shape)}")
    if not np.allclose(mask.affine, image.affine, atol=1e-3):
        raise PromptError(f"{label}: the mask's affine differs from the image's; resample it onto the image first")
    data = mask.data
    if slice_index is None:
        return boxes_from_mask(data, label=label)
    plane = np.take(data, slice_index, axis=axis)
    boxes_2d = boxes_from_mask(plane, label=f"{label} (slice {slice_index})")
    return [_slice_box([*b.lo, *b.hi], image.shape, axis, slice_index, label, b.source) for b in boxes_2d]
