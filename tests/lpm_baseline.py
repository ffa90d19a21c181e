"""The trivial few-shot baseline of the lpm_nnsam2 tests: the support's annotated slice(s) copied
onto every target slice, by world coordinates alone or after segkit's alignment (align_support)."""

from __future__ import annotations

import numpy as np

from segkit.io.image import Image
from segkit.tasks.lpm_nnsam2.align import Volume, align_support
from segkit.tasks.lpm_nnsam2.slices import ras_volume


def copied_annotation(support: Volume, seeds: list[int], target_ct: np.ndarray, target_affine: np.ndarray,
                      register: bool) -> np.ndarray:
    """The support's annotation on the target's own voxel grid (label values as in the support)."""
    alignment = align_support(support, seeds, Volume(target_ct, target_affine, "ct"), register=register)
    _, grid = ras_volume(Image(target_ct, target_affine, "target.nii.gz"))
    return grid.label_volume(alignment.reference)
