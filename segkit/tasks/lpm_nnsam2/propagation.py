"""What every propagator returns: frame labels and a per-frame, per-object quality score."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segkit.tasks.lpm_nnsam2.labels import lpm_labels
from segkit.tasks.lpm_nnsam2.sequence import SequenceFrame


@dataclass
class Propagation:
    labels: np.ndarray  # (n_target, 256, 256) uint8: logits > 0, overlaps resolved by argmax
    scores: np.ndarray  # (n_target, n_objects) float: predicted IoU of each object in each target frame
    sequence: list[SequenceFrame]
    propagator: str
    # predicted IoU of every frame of the sequence, support frames included (mask prompts count as 1):
    # {(position in sequence, object id): iou}
    sequence_scores: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def labels_from_logits(logits: np.ndarray, object_ids=None) -> np.ndarray:
    """(n_objects, H, W) logits -> label frame: an object where its logit is > 0 and the largest."""
    object_ids = object_ids or lpm_labels()
    best = np.argmax(logits, axis=0)
    positive = logits.max(axis=0) > 0
    return np.where(positive, np.asarray(object_ids, dtype=np.uint8)[best], 0).astype(np.uint8)
