"""Sliding-window inference of an AISCT-SAM network over a two-channel volume.

The network sees (B, 2, D, S, S) patches with axes (S-I, R-L, A-P); the volume is padded to at
least one patch, windows overlap by half, and the lesion probabilities are averaged.
"""

from __future__ import annotations

import numpy as np


def window_starts(size: int, patch: int) -> list[int]:
    if size <= patch:
        return [0]
    step = max(1, patch // 2)
    starts = list(range(0, size - patch + 1, step))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def predict_volume(net, channels: np.ndarray, slice_size: int, depth: int, device: str = "cpu", progress=None) -> np.ndarray:
    """channels (2, X, Y, Z) -> lesion probability (X, Y, Z)."""
    import torch

    volume = np.transpose(channels, (0, 3, 1, 2))  # (C, Z, X, Y)
    target = (depth, slice_size, slice_size)
    pads = [(0, 0)] + [(0, max(0, t - n)) for t, n in zip(target, volume.shape[1:])]
    # np.pad copies even when nothing is padded: a volume at least one patch large is used as it is
    padded = np.pad(volume, pads, mode="constant", constant_values=0.0) if any(p for _, p in pads) else volume
    total = np.zeros(padded.shape[1:], dtype=np.float32)
    count = np.zeros(padded.shape[1:], dtype=np.uint8)  # windows per voxel: at most 3 per axis
    windows = [(z, x, y) for z in window_starts(padded.shape[1], depth)
               for x in window_starts(padded.shape[2], slice_size) for y in window_starts(padded.shape[3], slice_size)]
    for done, (z, x, y) in enumerate(windows, start=1):
        patch = padded[:, z:z + depth, x:x + slice_size, y:y + slice_size]
        with torch.no_grad():
            logits = net(torch.from_numpy(np.ascontiguousarray(patch[None])).to(device))
            probability = torch.softmax(logits.float(), dim=1)[0, 1].cpu().numpy()
        total[z:z + depth, x:x + slice_size, y:y + slice_size] += probability
        count[z:z + depth, x:x + slice_size, y:y + slice_size] += 1
        if progress is not None:
            progress(done, len(windows))
    mean = np.divide(total, np.maximum(count, 1), out=total)
    mean = mean[: volume.shape[1], : volume.shape[2], : volume.shape[3]]
    return np.transpose(mean, (1, 2, 0))


def lesion_probability(net, case, card: dict, device: str = "cpu", progress=None) -> np.ndarray:
    """A preprocessed case's lesion probability on its own grid, the way nnU-Net predicts (shared by
    `segment` and training's validation): the brain's box of both channels, normalised with the
    package's CT statistics and resampled to the model's spacing, the sliding window, the
    probability resampled back onto the box and 0 outside it."""
    from segkit.tasks.ais_ncct.intensity import resample_to_shape
    from segkit.tasks.ais_ncct.pipeline import model_channels, nonzero_box

    target = card.get("spacing_mm")
    box = nonzero_box(case)
    channels = model_channels(case, box, target, card["normalisation"])
    network = card["network"]
    probability = predict_volume(net, channels, int(network["slice_size"]), int(network["depth"]), device, progress)
    if target is not None:
        box_shape = tuple(s.stop - s.start for s in box)
        probability = resample_to_shape(probability, box_shape, target, case.spacing, order=1)
    whole = np.zeros(case.brain.shape, dtype=np.float32)
    whole[box] = probability
    return whole
