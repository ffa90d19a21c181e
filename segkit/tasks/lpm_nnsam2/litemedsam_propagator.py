"""LiteMedSAM box propagation (`--propagator litemedsam`): the offline propagator.

LiteMedSAM has no memory, so the support mask enters as box prompts: each seed slice gives one
box per side, widened by SEED_BOX_MARGIN frame pixels because it comes from another subject, and
prompts the target frame that follows the seed in the interleaved sequence. From there the walk
goes outward slice by slice, prompting each frame with the widened bounding box of its
neighbour's mask for that side (MedSAM's own 3D method; the seed box where the neighbour lost
the side). The seed box is offered on every frame too, and per side the mask with the higher
predicted IoU is kept. The per-frame score is LiteMedSAM's IoU head (the SAM mask decoder's
predicted IoU) of the kept mask.

Preprocessing and the network (image encoder backends, ONNX cache) are segkit.tasks.medsam's.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from segkit.tasks.lpm_nnsam2.labels import lpm_labels
from segkit.tasks.lpm_nnsam2.propagation import Propagation, labels_from_logits
from segkit.tasks.lpm_nnsam2.sequence import interleave, start_targets, walk_order

SEED_BOX_MARGIN = 6  # frame pixels (of 256): subjects differ, so the seed's box is given some slack
NEIGHBOUR_BOX_MARGIN = 3  # as MedSAM's 3D script widens a neighbour's mask box


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

    def propagate(
        self,
        support_labels: np.ndarray,
        seed_slices: list[int],
        target_frames: np.ndarray,
        object_ids=None,
        n_support_slices: int | None = None,
        progress: Callable[[], None] | None = None,
        support_frames: np.ndarray | None = None,  # unused: box prompts need only the support mask
    ) -> Propagation:
        object_ids = object_ids or lpm_labels()
        n_target = target_frames.shape[0]
        sequence = interleave(seed_slices, n_support_slices or support_labels.shape[0], n_target)
        starts = start_targets(sequence)
        seed_boxes = {t: self._seed_boxes(support_labels[s], object_ids) for s, t in starts.items()}
        fallback = next(iter(seed_boxes.values()))
        masks: dict[int, np.ndarray] = {}
        labels = np.zeros(target_frames.shape, dtype=np.uint8)
        scores = np.zeros((n_target, len(object_ids)), dtype=np.float32)
        for k, neighbour in walk_order(n_target, list(seed_boxes)):
            candidates = [seed_boxes.get(k, fallback)]
            if neighbour is not None:
                candidates.insert(0, self._neighbour_boxes(masks[neighbour], object_ids, fallback))
            logits, ious = self._segment(target_frames[k], candidates)
            labels[k] = labels_from_logits(logits, object_ids)
            masks[k] = labels[k]
            scores[k] = ious
            if progress is not None:
                progress()
        sequence_scores = {}
        for position, frame in enumerate(sequence):
            for j, obj in enumerate(object_ids):
                sequence_scores[(position, obj)] = 1.0 if frame.is_support else float(scores[frame.slice, j])
        return Propagation(labels, scores, sequence, self.name, sequence_scores,
                           {"backend": self.encoder.name, "device": self.device})

    def _seed_boxes(self, seed_label_frame: np.ndarray, object_ids) -> list:
        return [mask_box(seed_label_frame == obj, SEED_BOX_MARGIN) for obj in object_ids]

    def _neighbour_boxes(self, neighbour_labels: np.ndarray, object_ids, fallback) -> list:
        boxes = []
        for j, obj in enumerate(object_ids):
            box = mask_box(neighbour_labels == obj, NEIGHBOUR_BOX_MARGIN)
            boxes.append(box if box is not None else fallback[j])
        return boxes

    def _segment(self, frame: np.ndarray, candidates: list[list]) -> tuple[np.ndarray, np.ndarray]:
        """(n_objects, 256, 256) logits and predicted IoU per object for one frame.

        `candidates` holds one or more prompt sets (one box per object); per object the mask with
        the highest predicted IoU wins. Walking only from neighbour boxes lets a mask shrink a little
        on every slice until it collapses; offering the seed box too lets the IoU head stop that.
        """
        from segkit.tasks.medsam.preprocess import preprocess_slice  # LiteMedSAM's own input recipe

        embedding, new_size = self.predictor.encode(*preprocess_slice(frame.astype(np.float32)))
        n_objects = len(candidates[0])
        logits = np.full((n_objects, *frame.shape), -1.0, dtype=np.float32)
        ious = np.full(n_objects, -1.0, dtype=np.float32)
        for boxes in candidates:
            for j, box in enumerate(boxes):
                if box is None:
                    continue
                candidate, iou = self.predictor.decode(embedding, new_size, frame.shape, box=box)
                iou = float(np.clip(iou, 0.0, 1.0))
                if iou > ious[j]:
                    logits[j], ious[j] = candidate, iou
        return logits, np.clip(ious, 0.0, 1.0)
