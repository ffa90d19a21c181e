"""LiteMedSAM box propagation (`--propagator litemedsam`): the offline propagator.

LiteMedSAM has no memory, so the support mask enters as box prompts, after alignment (align.py)
has mapped it into the target: the best-aligned slice is prompted with the box of the registered
annotation, widened by SEED_BOX_MARGIN frame pixels (the subjects still differ). From there the
walk goes outward slice by slice, prompting each frame with the widened bounding box of its
neighbour's mask for that side (MedSAM's own 3D method; the registered box where the neighbour
lost the side). The registered box is offered on every frame too, and per side the mask with the
higher predicted IoU is kept. The per-frame score is LiteMedSAM's IoU head (the SAM mask
decoder's predicted IoU) of the kept mask; the failure signal (signal.py) does not trust it alone.

Preprocessing and the network (image encoder backends, ONNX cache) are segkit.tasks.medsam's.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from segkit.tasks.lpm_nnsam2.labels import lpm_labels
from segkit.tasks.lpm_nnsam2.propagation import Propagation, labels_from_logits
from segkit.tasks.lpm_nnsam2.sequence import TARGET, SequenceFrame, walk_order

SEED_BOX_MARGIN = 6  # frame pixels (of 256): subjects differ, so the seed's box is given some slack
NEIGHBOUR_BOX_MARGIN = 3  # as MedSAM's 3D script widens a neighbour's mask box
PLAUSIBLE = 0.5  # Dice with the aligned annotation from which a mask counts as in the right place
MIN_PART = 0.15  # a muscle's box is cut off a side's mask only when each part holds this much of it


def mask_box(mask: np.ndarray, margin: int) -> np.ndarray | None:
    """SAM box (x0, y0, x1, y1) of a 256x256 frame mask, widened by margin and clipped."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    size = mask.shape[0]
    return np.array(
        [max(0, cols[0] - margin), max(0, rows[0] - margin), min(size - 1, cols[-1] + margin), min(size - 1, rows[-1] + margin)],
        dtype=np.float32,
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def _choice_score(iou: float, agreement: float) -> float:
    """Among masks placed where the aligned annotation is (agreement >= PLAUSIBLE), the one the IoU
    head rates best; others only when none is. Not IoU x agreement: that drags every mask toward the
    support subject's muscle size."""
    return iou + (1.0 if agreement >= PLAUSIBLE else agreement)


def split_at_waist(mask: np.ndarray) -> list[np.ndarray]:
    """A side's mask as its two muscles: cut across the right-left axis (frame rows) where the mask
    is narrowest, in the middle 60% of its extent; one part when a cut would leave a sliver."""
    rows = np.flatnonzero(mask.any(axis=1))
    widths = mask.sum(axis=1)[rows[0] : rows[-1] + 1]
    lo, hi = len(widths) // 5, len(widths) - len(widths) // 5
    if hi - lo < 2:
        return [mask]
    cut = rows[0] + lo + int(np.argmin(widths[lo:hi]))
    medial_lateral = [mask.copy(), mask.copy()]
    medial_lateral[0][cut:] = False
    medial_lateral[1][:cut] = False
    area = mask.sum()
    if min(part.sum() for part in medial_lateral) < MIN_PART * area:
        return [mask]
    return medial_lateral


def side_prompts(mask: np.ndarray, margin: int) -> tuple[list, list] | None:
    """(one box for the side, one box per muscle): a side's label is two muscles (multifidus,
    erector spinae), and one box around both often gets LiteMedSAM to segment only one."""
    whole = mask_box(mask, margin)
    if whole is None:
        return None
    return [whole], [mask_box(part, margin) for part in split_at_waist(mask)]


class LiteMedsamPropagator:
    name = "litemedsam"

    def __init__(self, weights_path, device: str = "cpu", backend: str = "auto"):
        from segkit.models.prompt import PromptPredictor
        from segkit.models.sam import load_with_encoder, member
        from segkit.runtime.device import resolve_device

        self.weights_path = weights_path
        self.device = resolve_device(device)
        self.net, self.encoder = load_with_encoder("litemedsam", weights_path, self.device, backend)
        self.predictor = PromptPredictor(self.net, self.encoder, member("litemedsam").input_size)

    def propagate(self, target_frames: np.ndarray, alignment, object_ids=None,
                  progress: Callable[[], None] | None = None) -> Propagation:
        """Segment every target frame, walking out from the alignment's best-aligned slices."""
        object_ids = object_ids or lpm_labels()
        n_target = target_frames.shape[0]
        masks: dict[int, np.ndarray] = {}
        labels = np.zeros(target_frames.shape, dtype=np.uint8)
        scores = np.zeros((n_target, len(object_ids)), dtype=np.float32)
        for k, neighbour in walk_order(n_target, alignment.start_slices):
            sources = [alignment.reference[k]] + ([masks[neighbour]] if neighbour is not None else [])
            logits, ious = self._segment(target_frames[k], sources, alignment.reference[k], object_ids)
            labels[k] = labels_from_logits(logits, object_ids)
            masks[k] = labels[k]
            scores[k] = ious
            if progress is not None:
                progress()
        sequence = [SequenceFrame(TARGET, k) for k in range(n_target)]
        sequence_scores = {(k, obj): float(scores[k, j]) for k in range(n_target) for j, obj in enumerate(object_ids)}
        return Propagation(labels, scores, sequence, self.name, sequence_scores,
                           {"backend": self.encoder.name, "device": self.device})

    def _segment(self, frame: np.ndarray, sources: list[np.ndarray], reference: np.ndarray,
                 object_ids) -> tuple[np.ndarray, np.ndarray]:
        """(n_objects, 256, 256) logits and predicted IoU per object for one frame.

        Prompts come from each source label frame (the registered annotation; the neighbour's mask,
        where there is one), per side as one box and as one box per muscle (masks united, IoU
        averaged). Per side, of the candidates in the right place (Dice against the registered
        annotation >= PLAUSIBLE) the one with the highest predicted IoU wins: the IoU head alone
        prefers a tidy mask of the wrong thing, the annotation alone would ignore this patient's
        anatomy. A source that lost a side gives none.
        """
        from segkit.tasks.medsam.preprocess import preprocess_slice  # LiteMedSAM's own input recipe

        embedding, new_size = self.predictor.encode(*preprocess_slice(frame.astype(np.float32)))
        logits = np.full((len(object_ids), *frame.shape), -1.0, dtype=np.float32)
        ious = np.zeros(len(object_ids), dtype=np.float32)
        for j, obj in enumerate(object_ids):
            best = -1.0
            for n, source in enumerate(sources):
                prompts = side_prompts(source == obj, SEED_BOX_MARGIN if n == 0 else NEIGHBOUR_BOX_MARGIN)
                for boxes in prompts or ():
                    candidate, iou = self._decode_union(embedding, new_size, frame.shape, boxes)
                    score = _choice_score(iou, _dice(candidate > 0, reference == obj))
                    if score > best:
                        logits[j], ious[j], best = candidate, iou, score
        return logits, ious

    def _decode_union(self, embedding, new_size, shape, boxes) -> tuple[np.ndarray, float]:
        decoded = [self.predictor.decode(embedding, new_size, shape, box=box) for box in boxes]
        union = np.max(np.stack([d[0] for d in decoded]), axis=0)
        return union, float(np.clip(np.mean([d[1] for d in decoded]), 0.0, 1.0))
