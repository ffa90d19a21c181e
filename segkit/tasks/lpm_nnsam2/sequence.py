"""The interleaved 'video' of support and target frames that the propagators walk through.

nnSAM2 interleaves the labelled seed slices with the target slices, both sorted by slice index:
seed, target, seed, target, ... Volumes of different lengths are matched by relative height
(slice centre / number of slices), so each seed sits just before the target slice at its level;
at equal height the seed comes first, so it prompts the target frame that follows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

SUPPORT, TARGET = "support", "target"


@dataclass(frozen=True)
class SequenceFrame:
    source: str  # SUPPORT or TARGET
    slice: int  # RAS axial slice index in its own volume

    @property
    def is_support(self) -> bool:
        return self.source == SUPPORT


def relative_height(index: int, n_slices: int) -> float:
    return (index + 0.5) / n_slices


def interleave(seed_slices: Sequence[int], n_support_slices: int, n_target_slices: int) -> list[SequenceFrame]:
    """Seed frames and every target frame in one order: by relative height, seeds first at ties."""
    frames = [(relative_height(s, n_support_slices), 0, SequenceFrame(SUPPORT, int(s))) for s in sorted(seed_slices)]
    frames += [(relative_height(t, n_target_slices), 1, SequenceFrame(TARGET, t)) for t in range(n_target_slices)]
    frames.sort(key=lambda item: (item[0], item[1], item[2].slice))
    return [frame for _, _, frame in frames]


def start_targets(sequence: list[SequenceFrame]) -> dict[int, int]:
    """For each seed slice, the target slice it prompts first: the next target frame in the
    sequence (the previous one for a seed at the very end)."""
    starts = {}
    for position, frame in enumerate(sequence):
        if not frame.is_support:
            continue
        after = [f for f in sequence[position + 1 :] if not f.is_support]
        before = [f for f in sequence[:position] if not f.is_support]
        chosen = after[0] if after else before[-1]
        starts[frame.slice] = chosen.slice
    return starts


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
