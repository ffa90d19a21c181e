"""Slice-by-slice segmentation of one box, 2D or 3D, as MedSAM's official 3D inference does it.

The middle slice of the box is prompted with the box itself; the walk then goes outward, up and
down, prompting each slice with the (256-scale, 3 px widened) bounding box of its neighbour's mask,
and falling back to the original box where that mask is empty. segkit boxes are inclusive, so
both end slices are segmented (the official script's ``range(z_middle, z_max)`` and
``range(z_middle - 1, z_min, -1)`` skip them because its box maxima come from exclusive bounds).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from segkit.tasks.medsam.prompts import Box
from segkit.tasks.medsam.preprocess import neighbour_box_256, preprocess_slice, sam_box_256

EMBEDDING_CACHE_SLICES = 32  # ~4 MB each: enough to share slices between overlapping boxes


class SliceSegmenter:
    """Segments 2D slices of one image with a box at 256 scale; the predictor caches slice embeddings."""

    def __init__(self, predictor, image, slice_axis: int, window=None):
        self.predictor = predictor  # segkit.models.prompt.PromptPredictor for this image only
        # an ndarray of any real dtype (stored integers included), or a segkit.io.slab.StoredVolume;
        # 3D images are read a box's slab at a time (hold_slab), and converted a slice at a time
        self.image = image
        self.slice_axis = slice_axis
        self.window = window  # an intensity window applied to each slice, or None
        self._slab, self._slab_first = None, 0

    def slice_shape(self) -> tuple[int, int]:
        if self.image.ndim == 2:
            return tuple(self.image.shape)
        return tuple(n for a, n in enumerate(self.image.shape) if a != self.slice_axis)

    def hold_slab(self, first: int, last: int) -> None:
        """Keep slices first..last (inclusive, along the slice axis) in memory: for an image on disk,
        the only read of a box (the embeddings of slices outside it may come from the cache)."""
        index = [slice(None)] * 3
        index[self.slice_axis] = slice(first, last + 1)
        self._slab, self._slab_first = np.asarray(self.image[tuple(index)]), first

    def plane(self, index: int | None) -> np.ndarray:
        if index is None:
            plane = np.asarray(self.image)
        else:
            plane = np.take(self._slab, index - self._slab_first, axis=self.slice_axis)
        return plane if self.window is None else self.window.apply(plane)

    def segment(self, index: int | None, box_256: np.ndarray) -> np.ndarray:
        embedding, new_size = self.predictor.embedding(index, lambda: preprocess_slice(self.plane(index)))
        return self.predictor.decode_mask(embedding, new_size, self.slice_shape(), box=box_256)


def slice_order(first: int, last: int) -> list[tuple[int, int | None]]:
    """(slice, neighbour it is prompted from) for an inclusive range: middle first, then up, then down."""
    middle = first + (last - first) // 2
    order = [(middle, None)]
    order += [(k, k - 1) for k in range(middle + 1, last + 1)]
    order += [(k, k + 1) for k in range(middle - 1, first - 1, -1)]
    return order


def segment_box(
    segmenter: SliceSegmenter, box: Box, out: np.ndarray, progress_step: Callable[[], None] | None = None
) -> None:
    """OR one box's mask (uint8 {0,1}) into `out` (uint8, the image's shape), slice by slice, so no
    second full-size volume is made; 3D boxes propagate through their slice range."""
    shape = segmenter.slice_shape()
    box_256 = sam_box_256(box.in_plane(segmenter.slice_axis), shape)
    if segmenter.image.ndim == 2:
        out |= segmenter.segment(None, box_256)
        if progress_step:
            progress_step()
        return
    moved = np.moveaxis(out, segmenter.slice_axis, 0)  # a view: writing into it fills `out`
    masks: dict[int, np.ndarray] = {}
    first, last = box.lo[segmenter.slice_axis], box.hi[segmenter.slice_axis]
    segmenter.hold_slab(first, last)
    for index, neighbour in slice_order(first, last):
        prompt = neighbour_box_256(masks[neighbour]) if neighbour is not None else None
        masks[index] = segmenter.segment(index, box_256 if prompt is None else prompt)
        moved[index] |= masks[index]
        if progress_step:
            progress_step()
