"""Few-shot pseudo-labelling: support image + mask -> label maps for each target, with score tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from segkit.tasks.facts import label_values
from segkit.tasks.lpm_nnsam2.labels import TASK
from segkit.tasks.lpm_nnsam2.propagation import Propagation
from segkit.tasks.lpm_nnsam2.rebuild import frames_to_labels
from segkit.tasks.lpm_nnsam2.slices import FrameGrid, detect_modality, frames_from_ras, label_frames_from_ras, ras_volume

TABLE_COLUMNS = (
    "slice_ras", "file_axis", "file_index", "iou_lpm_right", "iou_lpm_left", "iou_sum", "voxels_lpm_right", "voxels_lpm_left",
)


@dataclass
class Support:
    frames: np.ndarray  # (n, 256, 256) uint8
    labels: np.ndarray  # (n, 256, 256) label frames
    seeds: list[int]
    modality: str


@dataclass
class TargetResult:
    image: object  # segkit.io.image.Image
    labels: np.ndarray  # label map (0, 1, 2) in the target's own array order
    propagation: Propagation
    grid: FrameGrid
    modality: str
    info: dict = field(default_factory=dict)

    def table_rows(self) -> list[dict]:
        """One row per axial slice: the propagator's predicted IoU per side and the kept voxels."""
        rows = []
        for k in range(self.grid.n_slices):
            axis, index = self.grid.file_axis_and_index(k)
            plane = np.take(self.labels, index, axis=axis)
            right, left = (float(v) for v in self.propagation.scores[k])
            rows.append({
                "slice_ras": k, "file_axis": axis, "file_index": index,
                "iou_lpm_right": round(right, 4), "iou_lpm_left": round(left, 4), "iou_sum": round(right + left, 4),
                "voxels_lpm_right": int((plane == 1).sum()), "voxels_lpm_left": int((plane == 2).sum()),
            })
        return rows


def prepare_support(image, mask, seeds: list[int]) -> Support:
    ras, _ = ras_volume(image)
    ras_mask, _ = ras_volume(mask)
    modality = detect_modality(ras)
    return Support(frames_from_ras(ras, modality), label_frames_from_ras(ras_mask, label_values(TASK)), seeds, modality)


def pseudo_label(
    target, support: Support, propagator, progress: Callable[[], None] | None = None
) -> TargetResult:
    """Propagate the support's seed masks through one target and rebuild its 3D label map."""
    ras, grid = ras_volume(target)
    modality = detect_modality(ras)
    frames = frames_from_ras(ras, modality)
    propagation = propagator.propagate(
        support_labels=support.labels,
        seed_slices=support.seeds,
        target_frames=frames,
        object_ids=label_values(TASK),
        n_support_slices=support.labels.shape[0],
        progress=progress,
        support_frames=support.frames,
    )
    labels = frames_to_labels(propagation.labels, grid, label_values(TASK))
    return TargetResult(target, labels, propagation, grid, modality, {"modality": modality, **propagation.info})


def table_text(rows: list[dict]) -> str:
    lines = ["\t".join(TABLE_COLUMNS)]
    lines += ["\t".join(str(row[c]) for c in TABLE_COLUMNS) for row in rows]
    return "\n".join(lines) + "\n"
