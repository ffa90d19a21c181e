"""nnU-Net's sliding window (inference.py states its rules) run one row of windows at a time along the
model grid's slice axis, so memory follows a slab of windows, not the volume.

Windows go in nnU-Net's order (slice axis outermost), so once the row starting at padded slice z
begins, no later window reaches a slice before z: those slices are final and leave the accumulators
(divided by their weight sum) at once. Every voxel receives the same window contributions in the
same order as in a whole-volume accumulator, so the float32 sums, and the margin, are the same bits.
The network's input is built per row too, from a `channels` object that gives model-grid slices
(`shape` (X, Y, Z) and `slices(k0, k1)` -> (2, X, Y, k1 - k0) float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


def window_starts(size: int, patch: int) -> list[int]:
    """nnU-Net's tile positions at step 0.5: the fewest windows that overlap by at least half a patch,
    spread evenly from 0 to size - patch."""
    if size <= patch:
        return [0]
    count = int(np.ceil((size - patch) / (patch * 0.5))) + 1
    step = (size - patch) / (count - 1)
    return [int(np.round(step * i)) for i in range(count)]


def importance_map(shape) -> np.ndarray:
    """nnU-Net's Gaussian weight of a window's voxels (sigma 1/8 of its size, peak at its centre): a
    voxel near the centre, where the network saw most context, counts more than one at the edge."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros(shape, dtype=np.float64)
    delta[tuple(n // 2 for n in shape)] = 1.0
    weights = gaussian_filter(delta, [n / 8 for n in shape], 0, mode="constant", cval=0.0)
    weights /= weights.max()
    weights[weights == 0] = weights[weights > 0].min()  # every voxel of a window counts a little
    return weights.astype(np.float32)


def centred_padding(shape, target) -> list[tuple[int, int]]:
    """(before, after) per axis up to `target`, the odd voxel after (nnU-Net's pad_nd_image)."""
    return [(max(0, t - n) // 2, max(0, t - n) - max(0, t - n) // 2) for n, t in zip(shape, target)]


@dataclass(frozen=True)
class WindowLayout:
    """The windows over a (Z, X, Y) model grid padded to at least one patch (nnU-Net's centred padding)."""

    model_shape: tuple  # (X, Y, Z), the channels' order
    slice_size: int
    depth: int

    @property
    def pads(self) -> list[tuple[int, int]]:
        x, y, z = self.model_shape
        return centred_padding((z, x, y), (self.depth, self.slice_size, self.slice_size))

    @property
    def padded(self) -> tuple[int, int, int]:
        x, y, z = self.model_shape
        return tuple(n + sum(p) for n, p in zip((z, x, y), self.pads))

    def starts(self) -> tuple[list[int], list[int], list[int]]:
        zp, xp, yp = self.padded
        return (window_starts(zp, self.depth), window_starts(xp, self.slice_size),
                window_starts(yp, self.slice_size))


class ArrayChannels:
    """Model-grid channels already held whole, (2, X, Y, Z): the slices are views."""

    def __init__(self, channels: np.ndarray):
        self.array = channels
        self.shape = tuple(channels.shape[1:])

    def slices(self, first: int, stop: int) -> np.ndarray:
        return self.array[..., first:stop]


def row_block(channels, layout: WindowLayout, z: int) -> np.ndarray:
    """(2, depth, X', Y') float32: the padded volume's slices z .. z + depth, zeros where it is padding."""
    (z_before, _), (x_before, _), (y_before, _) = layout.pads
    x, y, z_count = layout.model_shape
    _, xp, yp = layout.padded
    block = np.zeros((2, layout.depth, xp, yp), dtype=np.float32)
    first, stop = max(0, z - z_before), min(z_count, z + layout.depth - z_before)
    if stop > first:
        data = channels.slices(first, stop)  # (2, X, Y, n)
        offset = first + z_before - z
        block[:, offset:offset + stop - first, x_before:x_before + x, y_before:y_before + y] = np.transpose(data, (0, 3, 1, 2))
    return block


class RowAccumulator:
    """The weighted margin sum and weight sum of the padded slices from `start` to `start + depth`."""

    def __init__(self, layout: WindowLayout):
        self.layout = layout
        self.start = 0
        _, xp, yp = layout.padded
        self.total = np.zeros((layout.depth, xp, yp), dtype=np.float32)
        self.weight_sum = np.zeros_like(self.total)

    def add(self, z: int, x: int, y: int, margin: np.ndarray, weights: np.ndarray) -> None:
        size = self.layout.slice_size
        region = (slice(z - self.start, z - self.start + self.layout.depth), slice(x, x + size), slice(y, y + size))
        self.total[region] += margin * weights
        self.weight_sum[region] += weights

    def finalise_before(self, stop: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first model slice, mean margin (X, Y, n)) for padded slices start .. stop, which no
        later window touches, and move the accumulators on to `stop`."""
        count = stop - self.start
        if count <= 0:
            return
        mean = np.divide(self.total[:count], self.weight_sum[:count])
        kept = self.layout.depth - count
        for name in ("total", "weight_sum"):
            moved = np.zeros_like(self.total)
            moved[:kept] = getattr(self, name)[count:]
            setattr(self, name, moved)
        first, self.start = self.start, stop
        yield from self._inside(first, mean)

    def _inside(self, first: int, mean: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        (z_before, _), (x_before, _), (y_before, _) = self.layout.pads
        x, y, z_count = self.layout.model_shape
        lo, hi = max(first, z_before), min(first + mean.shape[0], z_before + z_count)
        if hi > lo:
            inside = mean[lo - first:hi - first, x_before:x_before + x, y_before:y_before + y]
            yield lo - z_before, np.transpose(inside, (1, 2, 0))


def window_margin(net, patch: np.ndarray, device: str) -> np.ndarray:
    """Lesion logit minus background logit of one (1, 2, D, S, S) window."""
    import torch

    with torch.no_grad():
        logits = net(torch.from_numpy(patch).to(device)).float()
        return (logits[0, 1] - logits[0, 0]).cpu().numpy()


def margin_slabs(net, channels, slice_size: int, depth: int, device: str = "cpu",
                 progress=None) -> Iterator[tuple[int, np.ndarray]]:
    """(first model slice, Gaussian-weighted mean margin (X, Y, n) float32) in slice order, each slab
    as soon as no later window reaches it; together they are the whole-volume margin."""
    layout = WindowLayout(tuple(channels.shape), slice_size, depth)
    weights = importance_map((depth, slice_size, slice_size))
    z_starts, x_starts, y_starts = layout.starts()
    total, done = len(z_starts) * len(x_starts) * len(y_starts), 0
    accumulator = RowAccumulator(layout)
    for z in z_starts:
        yield from accumulator.finalise_before(z)
        block = row_block(channels, layout, z)
        for x in x_starts:
            for y in y_starts:
                patch = np.ascontiguousarray(block[None, :, :, x:x + slice_size, y:y + slice_size])
                accumulator.add(z, x, y, window_margin(net, patch, device), weights)
                done += 1
                if progress is not None:
                    progress(done, total)
    yield from accumulator.finalise_before(layout.padded[0])
