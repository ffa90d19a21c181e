"""From frame masks to 3D label maps (METHODS: nnSAM2 'Rebuild').

Per slice and class: keep the largest connected component and fill its holes (at frame
resolution); resize back to the input's grid; per class keep the largest 3D component.

segkit: "largest" keeps every component of at least KEEP_FRACTION of the largest one. A side's
label is two muscles, multifidus and erector spinae, which a fat plane can part on a slice (and
along the whole volume); the largest component alone would drop the multifidus there. Specks
(under KEEP_FRACTION) still go.
"""

from __future__ import annotations

import numpy as np

from segkit.postprocess.masks import bincount_by_slab
from segkit.tasks.lpm_nnsam2.labels import lpm_labels


KEEP_FRACTION = 0.2


def largest_component(mask: np.ndarray, keep_fraction: float = KEEP_FRACTION) -> np.ndarray:
    """The largest connected component, and any other of at least keep_fraction of its size.

    Components are labelled inside the mask's bounding box, where they all lie (scipy's int32
    labels of a whole 512x512x800 grid are 838 MB; the muscles fill a small part of it)."""
    from scipy import ndimage

    from segkit.io.grid import mask_box

    mask = np.asarray(mask, dtype=bool)
    box = mask_box(mask)
    if box is None:
        return mask
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    components, count = ndimage.label(mask[box], structure=structure)
    if count == 1:
        return mask
    sizes = bincount_by_slab(components, count + 1)[1:]
    keep = np.zeros(count + 1, dtype=bool)
    keep[1:] = sizes >= keep_fraction * sizes.max()
    kept = np.zeros_like(mask)
    kept[box] = keep[components]  # a lookup: no temporaries of np.isin's
    return kept


def clean_frame_labels(frame_labels: np.ndarray, labels=None) -> np.ndarray:
    """(n, H, W) label frames -> same, with each class's largest component per frame, holes filled."""
    labels = labels or lpm_labels()
    from scipy import ndimage

    cleaned = np.zeros_like(frame_labels)
    for k in range(frame_labels.shape[0]):
        for value in labels:
            region = largest_component(frame_labels[k] == value)
            if region.any():
                region = ndimage.binary_fill_holes(region)
                cleaned[k][region & (cleaned[k] == 0)] = value
    return cleaned


def keep_largest_3d(label_volume: np.ndarray, labels=None) -> np.ndarray:
    labels = labels or lpm_labels()
    out = np.zeros_like(label_volume)
    for value in labels:
        out[largest_component(label_volume == value)] = value
    return out


def frames_to_labels(frame_labels: np.ndarray, grid, labels=None) -> np.ndarray:
    """Cleaned frames -> label map in the grid's input file order, largest 3D component per class."""
    labels = labels or lpm_labels()
    volume = grid.label_volume(clean_frame_labels(frame_labels, labels), labels)
    return keep_largest_3d(volume, labels)
