"""MedSAM's LiteMedSAM preprocessing and postprocessing for one 2D slice, in numpy.

The official inference script (bowang-lab/MedSAM, CVPR24_LiteMedSAM_infer.py) does, per slice:
replicate to 3 channels; resize the longest side to 256 with cv2 INTER_AREA (new size
``int(side * 256 / max(H, W) + 0.5)``); min-max normalise the *resized* image with
``(x - min) / clip(max - min, 1e-8)``; pad bottom/right with zeros to 256x256; scale the box with
``int(coord * 256 / max(H, W))``. Logits are cropped to the resized size, resized back bilinearly
(align_corners=False) and thresholded at probability 0.5.

cv2 is not a dependency, so INTER_AREA is implemented here as an exact area-overlap matrix per
axis (`area_weights`). That is what cv2 computes both when shrinking (its resizeArea path weights
each source pixel by its overlap with the destination pixel) and when enlarging (its INTER_AREA
upscaling blends the two source pixels a destination pixel straddles, by overlap). torch's
``F.interpolate(mode="area")`` is adaptive average pooling: for non-integer factors its bins are
``[floor(i*s), ceil((i+1)*s))`` with equal weights, which is not area interpolation, so it is not
used.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

IMAGE_SIZE = 256
NEIGHBOUR_BOX_MARGIN = 3  # the official 3D script widens a neighbour's mask box by 3 px at 256 scale


def resized_shape(height: int, width: int, target: int = IMAGE_SIZE) -> tuple[int, int]:
    """The (newh, neww) of a longest-side resize, rounded as the official script does.

    A side that would round to 0 pixels (a strip under 1/512 of the long side) is kept at 1,
    where the official script would crash in cv2.
    """
    scale = target / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


@lru_cache(maxsize=64)
def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix: row d holds the overlap of source pixels with destination pixel d.

    Destination pixel d covers source coordinates [d * s, (d + 1) * s) with s = n_in / n_out; each
    row is normalised by s so a constant image stays constant.
    """
    scale = n_in / n_out
    starts = np.arange(n_out) * scale
    ends = starts + scale
    source_lo = np.arange(n_in)[None, :]
    overlap = np.minimum(ends[:, None], source_lo + 1.0) - np.maximum(starts[:, None], source_lo)
    weights = np.clip(overlap, 0.0, None) / scale
    weights.setflags(write=False)
    return weights


def area_resize(image: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Area-interpolate a 2D array to out_shape (float64), separably: rows then columns."""
    rows = area_weights(image.shape[0], out_shape[0])
    cols = area_weights(image.shape[1], out_shape[1])
    return rows @ np.asarray(image, dtype=np.float64) @ cols.T


def normalise_min_max(image: np.ndarray) -> np.ndarray:
    low = image.min()
    return (image - low) / np.clip(image.max() - low, 1e-8, None)


def preprocess_slice(slice_2d: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """A slice -> ((1, 3, 256, 256) float32 encoder input, (newh, neww) unpadded size).

    The three channels are identical copies, so the grey slice is resized once and replicated.
    """
    new_size = resized_shape(*slice_2d.shape)
    resized = normalise_min_max(area_resize(slice_2d, new_size))
    padded = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    padded[: new_size[0], : new_size[1]] = resized
    return np.broadcast_to(padded, (1, 3, IMAGE_SIZE, IMAGE_SIZE)).copy(), new_size


def sam_box_256(box_rows_cols: tuple[int, int, int, int], slice_shape: tuple[int, int]) -> np.ndarray:
    """Slice box (r0, c0, r1, c1), inclusive voxel indices -> SAM box (x0, y0, x1, y1) at 256 scale.

    SAM's x is the column. Coordinates are scaled and truncated as ``resize_box_to_256`` does.
    """
    r0, c0, r1, c1 = box_rows_cols
    ratio = IMAGE_SIZE / max(slice_shape)
    return np.array([int(c0 * ratio), int(r0 * ratio), int(c1 * ratio), int(r1 * ratio)], dtype=np.float32)


def neighbour_box_256(neighbour_mask: np.ndarray) -> np.ndarray | None:
    """The prompt the official 3D script derives from a neighbouring slice's mask, or None if empty.

    It resizes the mask like the image (cv2 INTER_AREA on uint8 rounds to the nearest integer, so a
    256-pixel is set when at least half covered), takes its bounding box on the padded 256 grid and
    widens it by 3 px, clipped to [0, 256].
    """
    new_size = resized_shape(*neighbour_mask.shape)
    resized = area_resize(neighbour_mask.astype(np.float64), new_size) >= 0.5
    rows = np.flatnonzero(resized.any(axis=1))
    cols = np.flatnonzero(resized.any(axis=0))
    if rows.size == 0:
        return None
    m = NEIGHBOUR_BOX_MARGIN
    return np.array(
        [max(0, cols[0] - m), max(0, rows[0] - m), min(IMAGE_SIZE, cols[-1] + m), min(IMAGE_SIZE, rows[-1] + m)],
        dtype=np.float32,
    )
