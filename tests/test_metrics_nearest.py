"""Exact nearest-point distances on a voxel grid (the search behind eval's surface distances)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import segkit.metrics._nearest as nearest
from segkit.metrics._nearest import nearest_distances


def _brute_force(points, targets, spacing):
    deltas = (points[:, None, :] - targets[None, :, :]) * np.asarray(spacing)
    return np.sqrt(np.min(np.sum(deltas**2, axis=2), axis=1))


def _random_sets(rng, ndim):
    shape = rng.integers(2, 40, size=ndim)
    spacing = rng.uniform(0.3, 3.0, size=ndim)
    n_points, n_targets = (int(v) for v in rng.integers(1, 150, size=2))
    points = np.stack([rng.integers(0, n, n_points) for n in shape], axis=1)
    targets = np.stack([rng.integers(0, n, n_targets) for n in shape], axis=1)
    return points, targets, spacing


@pytest.mark.parametrize("ndim", [2, 3])
def test_matches_brute_force_on_random_sets(ndim):
    rng = np.random.default_rng(ndim)
    for _ in range(40):
        points, targets, spacing = _random_sets(rng, ndim)
        expected = _brute_force(points, targets, spacing)
        np.testing.assert_allclose(nearest_distances(points, targets, spacing), expected, rtol=1e-12, atol=1e-12)


def test_single_far_target_and_shared_points():
    points = np.array([[0, 0, 0], [5, 5, 5], [39, 0, 17]])
    targets = np.array([[5, 5, 5]])
    spacing = (0.8, 0.8, 1.5)
    found = nearest_distances(points, targets, spacing)
    np.testing.assert_allclose(found, _brute_force(points, targets, spacing), rtol=1e-12)
    assert found[1] == 0.0


def test_points_left_over_by_the_budget_are_still_exact(monkeypatch):
    # Two clusters far apart: with no budget the grid search stops at once and the k-d tree
    # answers for every point; the distances must not change.
    rng = np.random.default_rng(3)
    points = rng.integers(0, 6, size=(200, 3))
    targets = rng.integers(60, 66, size=(50, 3))
    spacing = (1.0, 0.7, 2.0)
    expected = _brute_force(points, targets, spacing)
    np.testing.assert_allclose(nearest_distances(points, targets, spacing), expected, rtol=1e-12)
    monkeypatch.setattr(nearest, "_MIN_BUDGET", 0)
    monkeypatch.setattr(nearest, "_BUDGET_PER_POINT", 0)
    np.testing.assert_allclose(nearest_distances(points, targets, spacing), expected, rtol=1e-12)


def test_surface_distances_do_not_import_scipy_spatial():
    # The point of the grid search: eval starts without scipy's ~0.3 s import.
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from segkit.metrics.surface import surface_distances, surface_metrics\n"
        "ref = np.zeros((30, 30, 30), bool); ref[5:20, 6:22, 4:25] = True\n"
        "pred = np.roll(ref, 2, axis=0)\n"
        "for definition in ('surfel', 'voxel'):\n"
        "    surface_metrics(surface_distances(ref, pred, (0.8, 0.8, 1.5), definition))\n"
        "loaded = [m for m in ('scipy.spatial', 'scipy.ndimage') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr
