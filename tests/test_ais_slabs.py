"""ais_ncct's slab-wise inference (issue 17: memory follows a slab, not the volume) gives the
whole-volume path's numbers to the bit: the sliding window finalised a row of windows at a time, the
model-grid channels built per slab, the margin resampled back and thresholded per slab.

The reference below is the whole-volume rule segkit used before (every channel at the model grid, one
float32 accumulator over the padded volume, the margin resampled whole), kept here as the oracle.
"""

from __future__ import annotations

import numpy as np
import pytest

from segkit.phantoms.head_ct import make_head_phantom

SHAPE = (48, 48, 60)  # 4.2 x 4.6 x 2 mm: thin slices against a thick-slice model grid
FOV = (200.0, 220.0, 120.0)
THICK = [3.0, 3.0, 10.0]  # nnU-Net resamples it slice by slice ("per_slice")
ISOTROPIC = [5.0, 5.0, 5.0]  # neither grid anisotropic: 3D resampling ("whole")


def reference_margin(net, channels: np.ndarray, slice_size: int, depth: int) -> np.ndarray:
    """The whole-volume sliding window (segkit before the slab pass): one padded volume, one float32
    sum and weight sum over all of it, divided at the end."""
    import torch

    from segkit.tasks.ais_ncct.slab_window import centred_padding, importance_map, window_starts

    volume = np.transpose(channels, (0, 3, 1, 2))
    target = (depth, slice_size, slice_size)
    pads = centred_padding(volume.shape[1:], target)
    padded = np.pad(volume, [(0, 0)] + pads)
    weights = importance_map(target)
    total = np.zeros(padded.shape[1:], dtype=np.float32)
    weight_sum = np.zeros(padded.shape[1:], dtype=np.float32)
    for z in window_starts(padded.shape[1], depth):
        for x in window_starts(padded.shape[2], slice_size):
            for y in window_starts(padded.shape[3], slice_size):
                region = (slice(z, z + depth), slice(x, x + slice_size), slice(y, y + slice_size))
                patch = np.ascontiguousarray(padded[(slice(None), *region)][None])
                with torch.no_grad():
                    logits = net(torch.from_numpy(patch)).float()
                total[region] += (logits[0, 1] - logits[0, 0]).numpy() * weights
                weight_sum[region] += weights
    mean = np.divide(total, weight_sum, out=total)
    inside = tuple(slice(before, before + n) for (before, _), n in zip(pads, volume.shape[1:]))
    return np.transpose(mean[inside], (1, 2, 0))


def reference_probability(net, case, card: dict) -> np.ndarray:
    """The whole-volume lesion probability: channels, margin and its resampling all held whole."""
    from scipy.special import expit

    from segkit.tasks.ais_ncct.intensity import resample_to_shape
    from segkit.tasks.ais_ncct.pipeline import model_channels

    target, box = card.get("spacing_mm"), case.box
    channels = model_channels(case, target, card["normalisation"])
    margin = reference_margin(net, channels, card["network"]["slice_size"], card["network"]["depth"])
    if target is not None:
        margin = resample_to_shape(margin, tuple(s.stop - s.start for s in box), target, case.spacing, order=1)
    whole = np.zeros(case.brain.shape, dtype=np.float32)
    whole[box] = expit(margin)
    return whole


@pytest.fixture(scope="module")
def network():
    import torch

    from segkit.tasks.ais_ncct.network import NetworkConfig, build_network

    torch.manual_seed(0)
    config = NetworkConfig(slice_size=32, depth=4, prompt_channels=(8, 16, 32, 64), feature_size=4)
    return build_network(config, pretrained=False).eval(), config


@pytest.fixture(scope="module")
def case():
    from segkit.tasks.ais_ncct.ct import compact_hu
    from segkit.tasks.ais_ncct.pipeline import preprocess_case

    phantom = make_head_phantom(4, shape=SHAPE, field_of_view_mm=FOV)
    hu = compact_hu(np.round(phantom.ct).astype(np.float32) + np.float32(0.0))  # a stored-integer CT
    assert hu.dtype == np.int16
    return preprocess_case(hu, phantom.truth["spacing_mm"], cache_dir=None)


def _card(config, spacing) -> dict:
    stats = {"mean": 30.0, "std": 8.0, "percentile_00_5": 0.0, "percentile_99_5": 60.0}
    return {"network": config.to_dict(), "spacing_mm": spacing, "normalisation": [stats, stats]}


# (the model's own spacing, rule "same", is test_ais_task.py's box test, on lesion_probability)
@pytest.mark.parametrize("spacing, rule", [(THICK, "per_slice"), (ISOTROPIC, "whole")])
def test_slab_wise_lesion_equals_the_whole_volume_path(network, case, spacing, rule):
    from segkit.tasks.ais_ncct.inference import lesion_mask, lesion_probability
    from segkit.tasks.ais_ncct.pipeline import ModelChannels
    from segkit.tasks.ais_ncct.slab_window import WindowLayout

    net, config = network
    card = _card(config, spacing)
    channels = ModelChannels(case, spacing, card["normalisation"])
    assert channels.resampling.rule == rule
    rows = WindowLayout(tuple(channels.shape), config.slice_size, config.depth).starts()[0]
    assert len(rows) >= 3, "the model grid must give several slabs of windows"
    expected = reference_probability(net, case, card)
    np.testing.assert_array_equal(lesion_probability(net, case, card), expected)
    if rule != "per_slice":
        return  # the mask's own steps (threshold, brain, uint8) are the same for every rule
    # a threshold that splits the brain (random weights give no lesion of their own)
    threshold = float(np.median(expected[case.brain]))
    mask = lesion_mask(net, case, card, threshold, value=2)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, ((expected >= threshold) & case.brain).astype(np.uint8) * 2)
    assert 0 < (mask == 2).sum() < case.brain.sum()


def test_model_channels_per_slab_equal_the_whole_channels(case):
    """Any range of model slices, also ones that start or stop inside a run of slices copying one
    box slice, is the whole channels' slices to the bit."""
    from segkit.tasks.ais_ncct.pipeline import ModelChannels, model_channels

    stats = [{"mean": 30.0, "std": 8.0, "percentile_00_5": 0.0, "percentile_99_5": 60.0}] * 2
    for target in ([2.5, 2.5, 8.0], THICK):
        whole = model_channels(case, target, stats)
        channels = ModelChannels(case, target, stats)
        assert channels.resampling.rule == "per_slice" and tuple(channels.shape) == whole.shape[1:]
        depth = whole.shape[3]
        for first, stop in [(0, depth), (0, 1), (1, 3), (depth - 2, depth), (depth // 2, depth // 2 + 1)]:
            np.testing.assert_array_equal(channels.slices(first, stop), whole[..., first:stop])


def test_margin_slabs_cover_the_grid_once_in_order_and_early():
    """Slabs come in slice order, each once, and each before the windows of the rows after it run."""
    from segkit.tasks.ais_ncct.slab_window import ArrayChannels, margin_slabs

    calls = []

    class CountingNet:
        def __call__(self, x):
            import torch

            calls.append(x.shape)
            return torch.stack([torch.zeros_like(x[:, 0]), x[:, 0] * 2], dim=1)

    channels = np.random.default_rng(1).normal(size=(2, 20, 9, 30)).astype(np.float32)
    covered, seen_at = [], []
    for first, slab in margin_slabs(CountingNet(), ArrayChannels(channels), slice_size=8, depth=6):
        covered.extend(range(first, first + slab.shape[2]))
        seen_at.append(len(calls))
    assert covered == list(range(30))
    assert len(seen_at) >= 4 and seen_at[0] < len(calls)  # the first slab left before the last window ran
    np.testing.assert_array_equal(
        np.concatenate([s for _, s in margin_slabs(CountingNet(), ArrayChannels(channels), 8, 6)], axis=2),
        reference_margin(CountingNet(), channels, 8, 6))


def test_case_keeps_only_the_box_of_its_channels(case):
    """The channels are held as their non-zero box; put back on the grid they are the stripped CT and
    the mirror zeroed outside the brain, as the whole-grid pipeline made them."""
    from segkit.io.grid import mask_box
    from segkit.tasks.ais_ncct.ct import apply_brain_mask
    from segkit.tasks.ais_ncct.mirror import flip_register

    stripped = apply_brain_mask(case.hu, case.brain)
    mirror = flip_register(stripped, case.spacing, brain=case.brain).mirror * case.brain
    assert case.box == mask_box((stripped != 0) | (mirror != 0))
    assert case.stripped.shape == tuple(s.stop - s.start for s in case.box)
    assert case.stripped.size < 0.5 * stripped.size  # the head's box, not the field of view
    np.testing.assert_array_equal(case.whole(case.stripped), stripped)
    np.testing.assert_array_equal(case.whole(case.mirror), mirror)


@pytest.mark.parametrize("slab", [1, 3, 32])
def test_nonzero_box_by_slabs_equals_the_whole_mask_box(slab):
    from segkit.io.grid import mask_box
    from segkit.tasks.ais_ncct.pipeline import nonzero_box

    rng = np.random.default_rng(slab)
    shape = (9, 7, 11)
    stripped = np.zeros(shape, dtype=np.int16)
    stripped[2:5, 3, 4:6] = rng.integers(1, 50, size=(3, 2))
    mirror = np.zeros(shape, dtype=np.float32)
    mirror[6, 1, 8] = 3.0  # inside the brain: counts
    mirror[0, 0, 10] = 5.0  # outside the brain: the mirror is zeroed there, so it does not count
    brain = np.zeros(shape, dtype=bool)
    brain[1:8, 1:6, 1:10] = True
    assert nonzero_box(stripped, mirror, brain, slab) == mask_box((stripped != 0) | ((mirror != 0) & brain))
    assert nonzero_box(stripped, mirror, brain, slab) == (slice(2, 7), slice(1, 4), slice(4, 9))
    empty = np.zeros(shape, dtype=np.int16)
    assert nonzero_box(empty, np.zeros(shape, np.float32), brain, slab) == tuple(slice(0, n) for n in shape)
