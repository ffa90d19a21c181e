"""Issue 18 item 1: fODF peaks are axes, not vectors. The sign rule (peak_frames.SIGN_RULE) makes a
peak and its negative the same network input, in numpy (cubes) and torch (slices) alike, and keeps
the callosal, cingulum and corticospinal directions away from its one discontinuity. The same
invariance on a trained model is shown by tests/test_cc_proof.py."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.tasks.cc_fodf.peak_frames import canonical_signs

torch = pytest.importorskip("torch")


def random_flips(peaks: np.ndarray, seed: int) -> np.ndarray:
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=peaks.shape[:-1] + (3, 1))
    return (peaks.reshape(peaks.shape[:-1] + (3, 3)) * signs).reshape(peaks.shape).astype(peaks.dtype)


def test_any_per_voxel_per_peak_flip_gives_the_same_canonical_peaks():
    peaks = np.random.default_rng(0).normal(size=(6, 7, 5, 9)).astype(np.float32)
    peaks[0, 0, 0, :3] = [1.0, -1.0, 0.0]  # on the rule's plane: the tie-break decides
    peaks[0, 0, 1, :3] = 0.0  # no peak
    for seed in range(3):
        np.testing.assert_array_equal(canonical_signs(random_flips(peaks, seed)), canonical_signs(peaks))
    np.testing.assert_array_equal(canonical_signs(-peaks), canonical_signs(peaks))
    canonical = canonical_signs(peaks).reshape(6, 7, 5, 3, 3)
    np.testing.assert_allclose(np.abs(canonical), np.abs(peaks.reshape(6, 7, 5, 3, 3)))  # only signs change


def test_the_main_bundle_directions_keep_one_sign_within_35_degrees():
    """v = (cos t, sin t * u) has key cos t + sin t (u1 + u2) > 0 whenever t < atan(1/sqrt 2) = 35.26 degrees."""
    rng = np.random.default_rng(1)
    for axis in range(3):  # left-right (CC), anterior-posterior (cingulum), inferior-superior (CST)
        tilt = np.deg2rad(rng.uniform(0, 35.0, 2000))
        turn = rng.uniform(0, 2 * np.pi, 2000)
        local = np.stack([np.cos(tilt), np.sin(tilt) * np.cos(turn), np.sin(tilt) * np.sin(turn)], axis=1)
        directions = np.roll(local, axis, axis=1) * rng.choice([-1.0, 1.0], (2000, 1))
        canonical = canonical_signs(np.concatenate([directions, np.zeros((2000, 6))], axis=1))[:, :3]
        assert (canonical[:, axis] > 0).all()
    beyond = np.array([[np.cos(0.7), -np.sin(0.7) / np.sqrt(2), -np.sin(0.7) / np.sqrt(2)] + [0.0] * 6])  # 40 deg
    assert canonical_signs(beyond)[0, 0] < 0  # the bound is tight: past it the sign can change


def test_network_input_is_the_same_for_flipped_peaks():
    from segkit.tasks.cc_fodf.batches import normalise_slices

    x = torch.randn(2, 9, 12, 12)
    signs = torch.from_numpy(np.random.default_rng(2).choice([-1.0, 1.0], size=(2, 3, 1, 12, 12))).float()
    flipped = (x.reshape(2, 3, 3, 12, 12) * signs).reshape(2, 9, 12, 12)
    assert torch.equal(normalise_slices(flipped), normalise_slices(x))
    channels_last = normalise_slices(x).permute(0, 2, 3, 1).numpy()
    expected = canonical_signs(x.permute(0, 2, 3, 1).numpy())
    expected = (expected - expected.mean(axis=(1, 2, 3), keepdims=True)) / expected.std(axis=(1, 2, 3), ddof=1, keepdims=True)
    np.testing.assert_allclose(channels_last, expected, atol=1e-5)


def test_predicted_probabilities_do_not_depend_on_peak_signs():
    from segkit.tasks.cc_fodf.network import NetworkConfig, build_network
    from segkit.tasks.cc_fodf.task import predict_cube

    torch.manual_seed(0)
    net = build_network(NetworkConfig(architecture="unet", slice_size=16, width=0.0625, sam_grid=7)).eval()
    cube = np.zeros((16, 16, 16, 9), np.float32)
    cube[3:13, 3:13, 3:13] = np.random.default_rng(3).normal(size=(10, 10, 10, 9))
    same = predict_cube(net, cube), predict_cube(net, random_flips(cube, 4))
    np.testing.assert_array_equal(same[0], same[1])
