"""Which labels (or unions of labels) to evaluate: explicit labels, all labels present, or BraTS."""

from __future__ import annotations

import numpy as np

BRATS_REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
# Before BraTS 2023 the enhancing tumour was label 4 (label 3 was unused).
BRATS_REGIONS_LEGACY = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}


def brats_regions(legacy_et_label_4: bool = False) -> dict[str, tuple[int, ...]]:
    return dict(BRATS_REGIONS_LEGACY if legacy_et_label_4 else BRATS_REGIONS)


def labels_as_regions(labels) -> dict[str, tuple[int, ...]]:
    return {str(int(v)): (int(v),) for v in labels}


def present_labels(*label_maps: np.ndarray) -> list[int]:
    """Non-zero labels found in any of the maps, ascending (at least label 1, so empty masks still give a row)."""
    found: set[int] = set()
    for data in label_maps:
        found.update(int(v) for v in labels_in(data))
    return sorted(found) or [1]


def labels_in(data: np.ndarray) -> np.ndarray:
    """Non-zero values present; a histogram is much faster than np.unique for small label ranges."""
    flat = data.ravel(order="K")
    if np.issubdtype(flat.dtype, np.integer) and flat.size and 0 <= flat.min():
        top = int(flat.max())
        if top <= 1:  # binary masks, the usual case: bincount would first copy to int64
            return np.arange(1, top + 1)
        if top < 65536:
            counts = np.bincount(flat, minlength=1)
            return np.flatnonzero(counts[1:]) + 1
    values = np.unique(flat)
    return values[values != 0]


def region_mask(label_map: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of the voxels whose label is in `values` (read-only; may share the map's memory)."""
    if len(values) == 1:
        if values[0] == 1 and label_map.dtype == np.uint8 and label_map.size and label_map.max() <= 1:
            # A binary uint8 map already is the mask, byte for byte: a view saves a copy of the image.
            view = label_map.view(np.bool_)
            view.flags.writeable = False
            return view
        return label_map == values[0]
    return np.isin(label_map, values)
