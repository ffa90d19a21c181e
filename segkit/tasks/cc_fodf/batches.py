"""cc_fodf training batches: random slices of one subject along one axis, per-slice normalisation
and the augmentation recipe (METHODS.md: random crop, elastic, scale, blur, noise)."""

from __future__ import annotations

import math

import numpy as np

from segkit.tasks.cc_fodf.dataset import Subject


def sample_batch(subjects: list[Subject], batch_size: int, generator):
    """One random subject, one random axis (x, y or z), `batch_size` random slices along it."""
    import torch

    subject = subjects[int(torch.randint(len(subjects), (1,), generator=generator))]
    axis = int(torch.randint(3, (1,), generator=generator))
    size = subject.mask.shape[axis]
    indices = torch.randint(size, (batch_size,), generator=generator).numpy()
    images = np.stack([slice_channels_first(subject.peaks, axis, int(i)) for i in indices])
    masks = np.stack([np.take(subject.mask, int(i), axis=axis) for i in indices])[:, None]
    return torch.from_numpy(images), torch.from_numpy(masks.astype(np.float32))


def slice_channels_first(peaks: np.ndarray, axis: int, index: int) -> np.ndarray:
    """(X, Y, Z, 9) -> the (9, A, B) slice at `index` along `axis` (peak channels unchanged, as in TractSeg)."""
    return np.moveaxis(np.take(peaks, index, axis=axis), -1, 0)


def normalise_slices(x):
    """Peak signs canonicalised (peak_frames.SIGN_RULE: axes, not vectors), then zero mean / unit
    variance per sample over all channels together (METHODS.md). Every path into the network passes
    here: training batches after augmentation, validation and inference."""
    x = canonical_slice_signs(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / std.clamp_min(1e-6)


def canonical_slice_signs(x):
    """(B, 9, H, W): each peak's (x, y, z) channels multiplied by its SIGN_RULE sign, per pixel."""
    from segkit.tasks.cc_fodf.peak_frames import sign_key

    batch, channels, height, width = x.shape
    vectors = x.reshape(batch, channels // 3, 3, height, width).movedim(2, -1)
    signs = sign_key(vectors).to(x.dtype)
    return (vectors * signs[..., None]).movedim(-1, 2).reshape(x.shape)


def augment(images, masks, generator):
    """Spatial (random crop/shift, elastic, scale) on images and masks, then normalisation, blur and
    noise on the images. Elastic alpha 90-120 / sigma 9-11 px are given for 144 px slices: sigma
    scales with the slice and alpha with its square, so the deformation stays the same fraction."""
    import torch
    import torch.nn.functional as F

    batch, _, height, width = images.shape
    ratio = height / 144.0

    def uniform(low, high, shape=(batch,)):
        return low + (high - low) * torch.rand(shape, generator=generator)

    scale = uniform(0.9, 1.5)
    shift = uniform(-0.15, 0.15, (batch, 2))  # random crop: the slice window moves within +-15 %
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = 1.0 / scale
    theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, (batch, 1, height, width), align_corners=False)
    sigma = float(uniform(9.0, 11.0, (1,))) * ratio
    alpha = float(uniform(90.0, 120.0, (1,))) * ratio**2
    noise = torch.rand(batch, 2, height, width, generator=generator) * 2 - 1
    displacement = _gaussian_smooth(noise, sigma) * alpha  # pixels
    displacement = displacement * torch.tensor([2.0 / width, 2.0 / height]).view(1, 2, 1, 1)
    grid = grid + displacement.permute(0, 2, 3, 1)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    masks = (F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5).float()
    images = normalise_slices(images)
    images = torch.stack([_gaussian_smooth(img[None], float(s))[0] for img, s in zip(images, uniform(0.0, 1.0))])
    variance = uniform(0.0, 0.05).view(batch, 1, 1, 1)
    images = images + torch.randn(images.shape, generator=generator) * variance.sqrt()
    return images, masks


def _gaussian_smooth(x, sigma: float):
    """Separable Gaussian blur of every channel of (B, C, H, W); sigma in pixels (no-op below 0.1)."""
    import torch
    import torch.nn.functional as F

    if sigma < 0.1:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, (min(x.shape[-2:]) - 1))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), horizontal, groups=channels)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), vertical, groups=channels)
