"""A label map into one binary mask per registry label, each cleaned as asked.

Labels may nest (SCIseg: the cord covers values {1, 2}, the lesion {2}). Cleaning each mask on its
own could drop a cord piece that holds lesion voxels, so outer labels are cleaned first and an
inner label is cut to what its enclosing labels kept before it is cleaned itself.
"""

from __future__ import annotations

import numpy as np

from segkit.postprocess.masks import MinSize, clean_mask


def split_labels(
    label_map: np.ndarray,
    labels,
    *,
    largest: bool = False,
    fill_holes: bool = False,
    remove_small: MinSize | None = None,
    voxel_volume_mm3: float = 1.0,
) -> dict[str, np.ndarray]:
    """{label name: uint8 mask} for every label (objects with `.name` and `.values`), in `labels` order."""
    cleaned: dict[str, np.ndarray] = {}
    for label in sorted(labels, key=lambda lab: -len(lab.values)):  # outer regions first
        mask = _label_mask(label_map, label.values, labels)
        for outer in enclosing_labels(label, labels):
            mask &= cleaned[outer.name].view(bool)  # clean_mask gives 0/1 uint8: a view, not a copy
        cleaned[label.name] = clean_mask(
            mask, largest=largest, fill_holes=fill_holes, remove_small=remove_small, voxel_volume_mm3=voxel_volume_mm3
        )
    return {label.name: cleaned[label.name] for label in labels}


def _label_mask(label_map: np.ndarray, values, labels) -> np.ndarray:
    """Boolean mask of `values`, without a full-size copy where the map already is that mask (one
    label of value 1 in a 0/1 uint8 map, as medsam gives; only when it is the only label, since the
    view is the map itself and nested labels AND into their masks in place) or with one comparison
    (np.isin would allocate more than the mask on a full volume; a uint8 map is a table lookup)."""
    if len(labels) == 1 and list(values) == [1] and label_map.dtype == np.uint8 and label_map.max() <= 1:
        return label_map.view(bool)
    if len(values) == 1:
        return label_map == values[0]
    if label_map.dtype == np.uint8:  # a table lookup: no temporaries beside the mask
        table = np.zeros(256, dtype=bool)
        table[[v for v in values if 0 <= v < 256]] = True
        return table[label_map]
    return np.isin(label_map, values)


def enclosing_labels(label, labels) -> list:
    """The other labels whose values include all of this label's (SCIseg: sc [1, 2] encloses lesion 2)."""
    inner = set(label.values)
    return [other for other in labels if other is not label and inner < set(other.values)]
