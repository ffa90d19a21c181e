"""Few-shot pseudo-labelling: support image + mask -> label maps for each target, with score tables.

Per target: align the support to it (align.py), propagate from the best-aligned slice (the
propagator), check every slice and side (signal.py), clear the failed ones, rebuild the 3D label
map in the target's own grid (rebuild.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from segkit.tasks.lpm_nnsam2.align import Volume, align_support
from segkit.tasks.lpm_nnsam2.labels import lpm_label_names, lpm_labels
from segkit.tasks.lpm_nnsam2.propagation import Propagation
from segkit.tasks.lpm_nnsam2.rebuild import frames_to_labels
from segkit.tasks.lpm_nnsam2.signal import SliceChecks, check_slices, without_failed
from segkit.tasks.lpm_nnsam2.slices import FRAME_SIZE, FrameGrid, detect_modality, frames_from_ras, ras_volume

CHECKS = ("iou", "agree", "area_jump", "centroid_jump_mm", "failed")


@dataclass
class Support:
    volume: Volume  # RAS intensities, labels, affine, modality
    seeds: list[int]

    @property
    def modality(self) -> str:
        return self.volume.modality


@dataclass
class TargetResult:
    image: object  # segkit.io.image.Image
    labels: np.ndarray  # label map (0, 1, 2) in the target's own array order, failed slice-sides cleared
    propagation: Propagation
    grid: FrameGrid
    modality: str
    checks: SliceChecks
    info: dict = field(default_factory=dict)

    def table_rows(self) -> list[dict]:
        """One row per axial slice: every check per side, the kept voxels per side."""
        names = lpm_label_names()
        rows = []
        for k in range(self.grid.n_slices):
            axis, index = self.grid.file_axis_and_index(k)
            plane = np.take(self.labels, index, axis=axis)
            row = {"slice_ras": k, "file_axis": axis, "file_index": index}
            for check in CHECKS:
                for j, value in enumerate(lpm_labels()):
                    number = getattr(self.checks, check)[k, j]
                    row[f"{check}_{names[value]}"] = int(number) if check == "failed" else round(float(number), 4)
            row["iou_sum"] = round(float(self.checks.iou[k].sum()), 4)
            row["quality_sum"] = round(float(self.checks.quality[k].sum()), 4)
            for value in lpm_labels():
                row[f"voxels_{names[value]}"] = int((plane == value).sum())
            rows.append(row)
        return rows


def prepare_support(image, mask, seeds: list[int], modality: str | None = None) -> Support:
    ras, grid = ras_volume(image)
    ras_mask, _ = ras_volume(mask)
    volume = Volume(ras, grid.reorient.canonical_affine, modality or detect_modality(ras), ras_mask.astype(np.uint8))
    return Support(volume, seeds)


def pseudo_label(target, support: Support, propagator, progress: Callable[[], None] | None = None,
                 modality: str | None = None) -> TargetResult:
    """Align the support to one target, propagate, check each slice and rebuild its 3D label map."""
    ras, grid = ras_volume(target)
    modality = modality or detect_modality(ras)
    alignment = align_support(support.volume, support.seeds, Volume(ras, grid.reorient.canonical_affine, modality))
    frames = frames_from_ras(ras, modality)
    propagation = propagator.propagate(frames, alignment, object_ids=lpm_labels(), progress=progress)
    checks = check_slices(propagation.labels, propagation.scores, alignment.reference, frame_pixel_mm(grid), lpm_labels())
    labels = frames_to_labels(without_failed(propagation.labels, checks, lpm_labels()), grid, lpm_labels())
    names = lpm_label_names()
    info = {"modality": modality, "alignment": alignment.info, "start_slices_ras": alignment.start_slices,
            "failed_slices_ras": {names[v]: np.flatnonzero(checks.failed[:, j]).tolist() for j, v in enumerate(lpm_labels())},
            **propagation.info}
    failing = [names[lpm_labels()[j]] for j in checks.sides_failing_everywhere()]
    if failing:
        info["warning"] = (f"{', '.join(failing)} failed on every slice (wrong place, or no agreement with the aligned "
                           f"support): not segmented; check the support and this target")
    return TargetResult(target, labels, propagation, grid, modality, checks, info)


def frame_pixel_mm(grid: FrameGrid) -> tuple[float, float]:
    """Size in mm of one 256-frame pixel along its rows (RAS x) and columns (RAS y)."""
    spacing = np.linalg.norm(np.asarray(grid.reorient.canonical_affine)[:3, :2], axis=0)
    return tuple(float(s * n / FRAME_SIZE) for s, n in zip(spacing, grid.in_plane))


def table_text(rows: list[dict]) -> str:
    columns = list(rows[0]) if rows else []
    lines = ["\t".join(columns)]
    lines += ["\t".join(str(row[c]) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"
