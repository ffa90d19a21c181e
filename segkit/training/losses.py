"""Segmentation losses shared by segkit's own trainers: one soft Dice, and the two combinations the
tasks' recipes (METHODS.md) name. Each keeps its task's exact numbers (smoothing, weights, which
classes count), so a model trains as before the move."""

from __future__ import annotations


def soft_dice(probability, target, dims, smooth: float, *, sum_apart: bool = False):
    """(2 |P.T| + smooth) / (|P| + |T| + smooth), summed over `dims` (the rest stay: one value per class).

    `sum_apart` sums P and T separately rather than P + T: the same value up to float rounding, kept
    because ais_ncct's recipe sums them apart and its loss then matches the old code to the bit."""
    intersection = (probability * target).sum(dim=dims)
    if sum_apart:
        total = probability.sum(dim=dims) + target.sum(dim=dims)
    else:
        total = (probability + target).sum(dim=dims)
    return (2 * intersection + smooth) / (total + smooth)


def dice_ce_loss(logits, target):
    """ais_ncct: 0.5 x cross-entropy + 0.5 x (1 - soft Dice of the lesion class), the Dice pooled over
    the whole batch (nnU-Net's batch Dice). logits (B, 2, ...), target (B, ...) class indices."""
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target)
    probability = logits.softmax(dim=1)[:, 1]
    dice = soft_dice(probability, (target == 1).float(), dims=tuple(range(probability.ndim)), smooth=1e-5,
                     sum_apart=True)
    return 0.5 * ce + 0.5 * (1.0 - dice)


def dice_bce_loss(probabilities, labels):
    """brats_autosam2: 0.7 x (1 - mean soft Dice of classes 1-3) + 0.3 x BCE, on (4, D, H, W) class
    probabilities (not logits: the blend with SAM's masks happens on probabilities) and (D, H, W) labels."""
    import torch.nn.functional as F

    one_hot = F.one_hot(labels.long(), 4).permute(3, 0, 1, 2).to(probabilities.dtype)
    dice = 1 - soft_dice(probabilities[1:], one_hot[1:], dims=(1, 2, 3), smooth=1.0).mean()
    bce = F.binary_cross_entropy(probabilities.clamp(1e-6, 1 - 1e-6), one_hot)
    return 0.7 * dice + 0.3 * bce
