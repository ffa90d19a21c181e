"""Checks on the few-shot inputs, all done before any model runs: one line each, exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit.errors import ImageError, PromptError

from segkit.tasks.lpm_nnsam2.labels import lpm_labels
UNLABELLED = 255  # optional marker for 'not annotated' voxels in a support mask; treated as 0


def load_support(image_path: Path | str, mask_path: Path | str):
    """(support image, support label map with 255 cleared, sorted labelled RAS slice indices)."""
    from segkit.io.image import load_image, load_label_map
    from segkit.tasks.lpm_nnsam2.slices import ras_volume

    image = load_image(image_path, allowed_ndim=(3,))
    mask = load_label_map(mask_path, allowed_ndim=(3,))
    check_same_grid(image, mask)
    declared = lpm_labels()  # 1 lpm_right, 2 lpm_left (nnSAM2's two-class form)
    values = set(np.unique(mask.data).tolist()) - {0, UNLABELLED}
    undeclared = sorted(values - set(declared))
    if undeclared:
        raise PromptError(
            f"{mask.path}: label value(s) {undeclared} are not declared; the support mask holds 1 (right LPM) and "
            f"2 (left LPM), 0 for background (255 may mark unlabelled voxels)"
        )
    mask.data = np.where(mask.data == UNLABELLED, 0, mask.data).astype(np.uint8)
    ras_mask, _ = ras_volume(mask)
    seeds = [k for k in range(ras_mask.shape[2]) if (ras_mask[:, :, k] > 0).any()]
    if not seeds:
        raise PromptError(f"{mask.path}: no labelled slice; annotate right (1) and left (2) LPM on at least one axial slice")
    for k in seeds:
        missing = [v for v in declared if not (ras_mask[:, :, k] == v).any()]
        if missing:
            raise PromptError(
                f"{mask.path}: axial slice {k} (RAS) labels only {sorted(set(declared) - set(missing))}; "
                f"every annotated slice needs both 1 (right LPM) and 2 (left LPM)"
            )
    return image, mask, seeds


def check_same_grid(image, mask) -> None:
    from segkit.io.grid import check_same_grid as check_pair

    check_pair(mask, image, "support mask", reference_what="its image",
               fix="the mask must be drawn on the support image's own grid")


def load_targets(paths) -> list:
    """Every target as a 3D image; a 2D or 4D target is refused by name."""
    from segkit.io.image import load_image

    targets = []
    for path in paths:
        try:
            targets.append(load_image(path, allowed_ndim=(3,), keep_integers=True))  # read a slice at a time
        except ImageError as exc:
            raise ImageError(f"{exc} (lpm_nnsam2 targets are 3D axial volumes, like the support image)") from None
    return targets
