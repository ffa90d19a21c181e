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
        mask = np.isin(label_map, label.values)
        for outer in enclosing_labels(label, labels):
            mask &= cleaned[outer.name].astype(bool)
        cleaned[label.name] = clean_mask(
            mask, largest=largest, fill_holes=fill_holes, remove_small=remove_small, voxel_volume_mm3=voxel_volume_mm3
        )
    return {label.name: cleaned[label.name] for label in labels}


def enclosing_labels(label, labels) -> list:
    """The other labels whose values include all of this label's (SCIseg: sc [1, 2] encloses lesion 2)."""
    inner = set(label.values)
    return [other for other in labels if other is not label and inner < set(other.values)]
