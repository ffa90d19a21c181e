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

from segkit.postprocess.masks import kept_components
from segkit.tasks.lpm_nnsam2.labels import lpm_labels


KEEP_FRACTION = 0.2


def largest_component(mask: np.ndarray, keep_fraction: float = KEEP_FRACTION) -> np.ndarray:
    """The largest connected component, and any other of at least keep_fraction of its size."""
    return kept_components(np.asarray(mask, dtype=bool), lambda sizes: sizes >= keep_fraction * sizes.max())


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
