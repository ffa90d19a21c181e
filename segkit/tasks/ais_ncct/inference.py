"""Sliding-window inference of an AISCT-SAM network over a two-channel volume, as nnU-Net predicts.

The network sees (B, 2, D, S, S) patches with axes (S-I, R-L, A-P). Upstream predicts with nnU-Net's
predictor, so segkit follows its rules (mirroring left out: 8 passes per window): a volume smaller
than a patch is padded with zeros on both sides, windows overlap by at least half a patch and are
spread evenly, each window's logits are weighted by a Gaussian centred on it (sigma 1/8 of the
window) and averaged, and the export resamples the averaged logits, not probabilities, before the
softmax. With two classes the softmax needs only the lesion logit minus the background logit (the
margin), so that is the one array accumulated.

Memory follows a slab, not the volume (issue 17): the windows run a row at a time along the model
grid's slice axis (slab_window.py), each finished slab of the margin is resampled onto the brain
box's own slices as soon as the box slices it makes are complete (MarginExport), and there the
softmax and threshold turn it into the uint8 mask. Each step is nnU-Net's whole-volume rule computed
for fewer slices, so the mask is the whole-volume path's voxel for voxel (tests/test_ais_slabs.py).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


class MarginExport:
    """The margin's resampling from the model grid back onto the brain's box (`resample_to_shape`,
    order 1), fed model slabs in order and giving box slabs as soon as the model slices they copy
    are all in. For a 3D resampling ("whole") nothing is given until the last model slab arrives."""

    def __init__(self, model_shape, box_shape, model_spacing, spacing):
        from segkit.tasks.ais_ncct.intensity import SliceResampling

        self.resampling = SliceResampling(tuple(model_shape), tuple(box_shape), model_spacing or spacing, spacing, 1)
        self.whole = self.resampling.rule == "whole"
        self.sources = None if self.whole else self.resampling.sources()
        self.held: dict[int, np.ndarray] = {}  # model slices a box slice still to come may copy
        self.received = 0
        self.next = 0  # the first box slice not given yet

    def add(self, first: int, slab: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Take model slices first .. first + n; yield (first box slice, margin (X, Y, m) float32)."""
        for k in range(slab.shape[2]):
            self.held[first + k] = slab[:, :, k]
        self.received = first + slab.shape[2]
        if self.whole:
            yield from self._whole_when_complete()
            return
        ready = self.next
        while ready < len(self.sources) and self.sources[ready] < self.received:
            ready += 1
        if ready > self.next:
            yield self.next, self._box_slices(self.next, ready)
            self.next = ready
            needed = self.sources[ready] if ready < len(self.sources) else self.received
            self.held = {k: v for k, v in self.held.items() if k >= needed}

    def _box_slices(self, first: int, stop: int) -> np.ndarray:
        out = np.empty((*self.resampling.new_shape[:2], stop - first), dtype=np.float32)
        made = {}
        for k in range(first, stop):
            source = int(self.sources[k])
            if source not in made:
                made[source] = self.resampling.resample_slice(self.held[source])
            out[:, :, k - first] = made[source]
        return out

    def _whole_when_complete(self) -> Iterator[tuple[int, np.ndarray]]:
        from segkit.tasks.ais_ncct.intensity import resample_to_shape

        if self.received < self.resampling.old_shape[2]:
            return
        margin = np.stack([self.held[k] for k in range(self.received)], axis=2)
        self.held = {}
        r = self.resampling
        yield 0, resample_to_shape(margin, r.new_shape, r.spacing, r.target_spacing, order=1)


def box_margin_slabs(net, case, card: dict, device: str = "cpu", progress=None):
    """(box, iterator of (first box slice, margin on the box's grid (X, Y, m) float32)) of a
    preprocessed case, the way nnU-Net predicts: the brain's box of both channels, normalised with
    the package's CT statistics and resampled to the model's spacing, the sliding window, and the
    logit margin resampled back onto the box."""
    from segkit.tasks.ais_ncct.pipeline import ModelChannels
    from segkit.tasks.ais_ncct.slab_window import margin_slabs

    target = card.get("spacing_mm")
    channels = ModelChannels(case, target, card["normalisation"])
    export = MarginExport(channels.shape, case.stripped.shape, target, case.spacing)
    network = card["network"]
    slabs = margin_slabs(net, channels, int(network["slice_size"]), int(network["depth"]), device, progress)

    def box_slabs():
        for first, slab in slabs:
            yield from export.add(first, slab)

    return case.box, box_slabs()


def lesion_mask(net, case, card: dict, threshold: float = 0.5, value: int = 1, device: str = "cpu",
                progress=None) -> np.ndarray:
    """uint8 (`value` on the lesion) on the case's grid: the softmax of the margin at least
    `threshold`, inside the brain; shared by `segment` and training's validation. Filled a slab of
    the box at a time, so no float array of the volume is ever made."""
    from scipy.special import expit

    box, slabs = box_margin_slabs(net, case, card, device, progress)
    mask = np.zeros(case.brain.shape, dtype=np.uint8)
    x, y, z = box
    for first, margin in slabs:
        where = (x, y, slice(z.start + first, z.start + first + margin.shape[2]))
        lesion = (expit(margin) >= threshold) & case.brain[where]  # the two-class softmax
        mask[where] = lesion.astype(np.uint8) * np.uint8(value)
    return mask


def lesion_probability(net, case, card: dict, device: str = "cpu", progress=None) -> np.ndarray:
    """The lesion probability on the case's grid (float32, 0 outside the brain's box): the same pass
    as `lesion_mask`, kept whole, so a float32 volume; `segment` uses `lesion_mask`."""
    from scipy.special import expit

    box, slabs = box_margin_slabs(net, case, card, device, progress)
    whole = np.zeros(case.brain.shape, dtype=np.float32)
    x, y, z = box
    for first, margin in slabs:
        whole[x, y, z.start + first:z.start + first + margin.shape[2]] = expit(margin)
    return whole


def lesion_margin(net, channels: np.ndarray, slice_size: int, depth: int, device: str = "cpu", progress=None) -> np.ndarray:
    """channels (2, X, Y, Z) -> the Gaussian-weighted mean of lesion logit - background logit (X, Y, Z)."""
    from segkit.tasks.ais_ncct.slab_window import ArrayChannels, margin_slabs

    margin = np.empty(channels.shape[1:], dtype=np.float32)
    for first, slab in margin_slabs(net, ArrayChannels(channels), slice_size, depth, device, progress):
        margin[:, :, first:first + slab.shape[2]] = slab
    return margin
