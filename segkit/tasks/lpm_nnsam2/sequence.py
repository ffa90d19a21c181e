"""The frames the propagators walk through, and the order they walk in.

SAM 2.1 sees upstream's interleaved 'video' (support, target, support, target, ...: every target
frame after a mask-prompted support frame, registered onto it: sam2_propagator.py); LiteMedSAM
walks outward from the best-aligned slices (align.py), each slice prompted from its neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

SUPPORT, TARGET = "support", "target"


@dataclass(frozen=True)
class SequenceFrame:
    source: str  # SUPPORT or TARGET
    slice: int  # target RAS axial slice (a support frame: the target slice it is registered onto)

    @property
    def is_support(self) -> bool:
        return self.source == SUPPORT


def walk_order(n_target_slices: int, starts: Sequence[int]) -> list[tuple[int, int | None]]:
    """(target slice, neighbour it is prompted from) walking outward from the start slices;
    start slices have neighbour None (they are prompted from their seed)."""
    distance = np.full(n_target_slices, np.iinfo(np.int32).max)
    for s in starts:
        distance = np.minimum(distance, np.abs(np.arange(n_target_slices) - s))
    order = []
    for k in sorted(range(n_target_slices), key=lambda k: (distance[k], k)):
        if distance[k] == 0:
            order.append((k, None))
        else:
            nearest = min(starts, key=lambda s: (abs(k - s), s))
            order.append((k, k - 1 if nearest < k else k + 1))
    return order
