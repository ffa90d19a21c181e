"""Exact nearest-point distances on a voxel grid (behind eval's surface distances), every stage against brute force."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import segkit.metrics._envelopes as envelopes
import segkit.metrics._nearest as nearest
import segkit.metrics._plane_transform as plane_transform
from segkit.metrics._nearest import nearest_distances
from segkit.metrics._whole_planes import whole_planes


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


# Settings that force each stage: the default, the line search alone (no brute force; its gaps
# read from the table, or found by binary search), the plane transform for every point (tiny
# batches too; solved at every position or at the points only), the switch before a ring, far points leaving before the second ring, every plane crowded.
STAGES = {
    "default": {},
    "line_search": {"_BRUTE_FORCE_PAIRS": 0, "_DENSE_PLANE": 0, "_GAP_TABLE_PER_POINT": 10**9},
    "line_search_binary": {"_BRUTE_FORCE_PAIRS": 0, "_DENSE_PLANE": 0, "_GAP_TABLE_ENTRIES": 0},
    "transform": {"_BRUTE_FORCE_PAIRS": 0, "_MIN_BUDGET": 0, "_BUDGET_PER_POINT": 0},
    "transform_one_plane_per_batch": {"_BRUTE_FORCE_PAIRS": 0, "_MIN_BUDGET": 0, "_BUDGET_PER_POINT": 0,
                                      "_PLANE_BATCH_PIXELS": 1},
    # the last in-plane pass by envelopes only, or by comparison only (a few reads per step)
    "transform_envelopes": {"_BRUTE_FORCE_PAIRS": 0, "_MIN_BUDGET": 0, "_BUDGET_PER_POINT": 0,
                            "_COMPARED_POINTS_PER_LINE": 0},
    "transform_compared": {"_BRUTE_FORCE_PAIRS": 0, "_MIN_BUDGET": 0, "_BUDGET_PER_POINT": 0,
                           "_COMPARED_POINTS_PER_LINE": 10**9, "_COMPARISON_CHUNK": 7},
    # every batch solved at every position of its planes, or only at its points
    "transform_whole_grid": {"_BRUTE_FORCE_PAIRS": 0, "_MIN_BUDGET": 0, "_BUDGET_PER_POINT": 0, "_WHOLE_GRID": 10**9},
    "transform_at_points": {"_BRUTE_FORCE_PAIRS": 0, "_MIN_BUDGET": 0, "_BUDGET_PER_POINT": 0, "_WHOLE_GRID": 0},
    "ring_switch": {"_BRUTE_FORCE_PAIRS": 0, "_RING_CHECK": 0, "_RING_VS_TRANSFORM": 0},
    # every point with a target seen leaves for the transform before the second ring
    "far_points": {"_BRUTE_FORCE_PAIRS": 0, "_FAR": 0, "_RING_VS_TRANSFORM": 0, "_DENSE_PLANE": 10**9},
    "crowded_planes": {"_BRUTE_FORCE_PAIRS": 0, "_DENSE_PLANE": 10**9},
}


@pytest.fixture(params=sorted(STAGES))
def stage(request, monkeypatch):
    for name, value in STAGES[request.param].items():
        module = next(m for m in (plane_transform, envelopes, nearest) if hasattr(m, name))
        monkeypatch.setattr(module, name, value)
    return request.param


@pytest.fixture
def transform_calls(monkeypatch):
    """Counts the batches the plane transform solves."""
    calls = []
    original = plane_transform.PlaneTransform._solve

    def counting(self, *args):
        calls.append(args[0].size)
        return original(self, *args)

    monkeypatch.setattr(plane_transform.PlaneTransform, "_solve", counting)
    return calls


@pytest.mark.parametrize("ndim", [2, 3])
def test_matches_brute_force_on_random_sets(ndim, stage, transform_calls):
    rng = np.random.default_rng(ndim)
    for _ in range(40):
        points, targets, spacing = _random_sets(rng, ndim)
        expected = _brute_force(points, targets, spacing)
        np.testing.assert_allclose(nearest_distances(points, targets, spacing), expected, rtol=1e-12, atol=1e-12)
        distinct = np.unique(targets, axis=0)  # as surfaces give them
        np.testing.assert_allclose(nearest_distances(points, distinct, spacing, distinct_targets=True), expected,
                                   rtol=1e-12, atol=1e-12)
    # The forced stages really ran.
    assert bool(transform_calls) == (stage not in ("default", "line_search", "line_search_binary")), (stage, len(transform_calls))


@pytest.mark.parametrize("ndim", [2, 3])
def test_far_clusters(ndim, stage):
    # Two clusters far apart: the case the line search alone is slow for.
    rng = np.random.default_rng(3)
    points = rng.integers(0, 6, size=(300, ndim))
    targets = rng.integers(60, 66, size=(80, ndim))
    spacing = (1.0, 0.7, 2.0)[:ndim]
    expected = _brute_force(points, targets, spacing)
    np.testing.assert_allclose(nearest_distances(points, targets, spacing), expected, rtol=1e-12)


@pytest.mark.parametrize("ndim", [2, 3])
def test_points_whose_lines_meet_targets_far_away(ndim, stage, transform_calls):
    """A hole's surface: each point's own grid line meets a target, but 40 mm away along it. Such
    points leave the search for the transform before the second ring, whatever the budget left."""
    rng = np.random.default_rng(5)
    spacing = (1.0, 0.7, 2.0)[:ndim]  # the lines run along axis 1
    points = rng.integers(0, 12, size=(300, ndim))
    points[:, 1] = rng.integers(0, 6, 300)
    n_targets = 30 if ndim == 2 else 400  # in 2D, more would fill whole rows: another stage's case
    targets = rng.integers(0, 12, size=(n_targets, ndim))
    targets[:, 1] = rng.integers(60, 66, n_targets)
    expected = _brute_force(points, targets, spacing)
    np.testing.assert_allclose(nearest_distances(points, targets, spacing), expected, rtol=1e-12)
    if stage == "line_search":  # the search alone would finish within its budget
        assert transform_calls, "far points should have gone to the transform"


def test_points_beyond_the_targets_box_skip_the_search(monkeypatch):
    """Disjoint masks: points whose distance to the targets' bounding box alone would take the
    search more than _RING_CHECK look-ups, and more than the transform's positions, go straight to
    the transform; points inside the box are still searched."""
    searched = []
    original = nearest._LineSearch.squared_distances

    def recording(self, points, *args):
        searched.append(len(points))
        return original(self, points, *args)

    monkeypatch.setattr(nearest._LineSearch, "squared_distances", recording)
    monkeypatch.setattr(nearest, "_BRUTE_FORCE_PAIRS", 0)
    rng = np.random.default_rng(8)
    spacing = (1.0, 0.7, 2.0)  # lines along axis 1; first ring 8 mm, so "far" is beyond 32 mm
    targets = rng.integers(60, 72, size=(300, 3))
    far = rng.integers(0, 9, size=(400, 3))  # over 110 mm from the box: 19,000-31,000 look-ups each
    near = rng.integers(61, 71, size=(50, 3))
    points = np.concatenate([far, near])
    expected = _brute_force(points, targets, spacing)
    np.testing.assert_allclose(nearest_distances(points, targets, spacing), expected, rtol=1e-12)
    assert searched == [len(near)]
    searched.clear()
    np.testing.assert_allclose(nearest_distances(far[:20], targets, spacing), expected[:20], rtol=1e-12)
    assert searched == [20], "20 far points (at most 0.62 M look-ups) stay below _RING_CHECK: searched as before"


def test_single_far_target_and_shared_points():
    points = np.array([[0, 0, 0], [5, 5, 5], [39, 0, 17]])
    targets = np.array([[5, 5, 5]])
    spacing = (0.8, 0.8, 1.5)
    found = nearest_distances(points, targets, spacing)
    np.testing.assert_allclose(found, _brute_force(points, targets, spacing), rtol=1e-12)
    assert found[1] == 0.0


def _plane(extent, axis, coordinate):
    grid = np.stack(np.meshgrid(*[np.arange(e) for e in extent], indexing="ij"), axis=-1).reshape(-1, len(extent))
    return grid[grid[:, axis] == coordinate]


@pytest.mark.parametrize("missing", [False, True])
def test_whole_planes_of_targets(missing, stage):
    # A mask that fills a slab has whole planes of surface; with one position missing (and
    # duplicates making up the count) the plane is not whole and must be searched as usual.
    rng = np.random.default_rng(5)
    extent = (17, 12, 9)
    targets = np.concatenate([_plane(extent, 2, 3), _plane(extent, 0, 16), rng.integers(0, 9, size=(20, 3))])
    if missing:
        hole = np.all(targets == [4, 5, 3], axis=1)
        targets = np.concatenate([targets[~hole], targets[:3]])
    points = np.stack([rng.integers(0, e, 400) for e in extent], axis=1)
    spacing = (0.9, 0.6, 2.1)
    expected = _brute_force(points, targets, spacing)
    np.testing.assert_allclose(nearest_distances(points, targets, spacing), expected, rtol=1e-12, atol=1e-12)
    distinct = np.unique(targets, axis=0)
    np.testing.assert_allclose(nearest_distances(points, distinct, spacing, distinct_targets=True), expected,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("distinct", [False, True])
def test_whole_planes_are_recognised(distinct):
    # Distinct targets are recognised by their count alone; the plane missing one position is
    # not whole either way.
    extent = np.array([6, 5, 4])
    targets = np.concatenate([_plane(extent, 1, 0), [[2, 3, 1]]])
    points = np.array([[0, 4, 3], [5, 2, 0]])
    metric = nearest._Metric(np.array([1.0, 2.0, 3.0]))
    squared, rest = whole_planes(points, targets, extent, metric, distinct)
    assert rest.tolist() == [[2, 3, 1]]
    np.testing.assert_array_equal(squared, [(4 * 2.0) ** 2, (2 * 2.0) ** 2])
    missing_one = targets[1:]
    squared, rest = whole_planes(points, missing_one, extent, metric, distinct)
    assert np.all(np.isinf(squared)) and len(rest) == len(missing_one)


def _envelope_inputs(rng, ties: bool):
    """(values (n, m) with inf where empty, weight). Each row's share of columns holding a value
    varies, so rows are pushed both whole and as gathered columns (_SPARSE_ROW). With ties: small
    integers, whose sums are exact, so several rows can give exactly the least value."""
    n, m = (int(v) for v in rng.integers(1, 30, size=2))
    weight = float(rng.integers(1, 4)) if ties else float(rng.uniform(0.1, 5.0))
    present = rng.random((n, m)) < rng.random((n, 1))
    drawn = rng.integers(0, 20, (n, m)).astype(np.float64) if ties else rng.uniform(0, 500, (n, m))
    return np.where(present, drawn, np.inf), weight


@pytest.mark.parametrize("ties", [False, True])
def test_envelope_argmin_matches_brute_force(ties):
    # With ties, the parabola found must give exactly the least value where several do.
    rng = np.random.default_rng(11 + ties)
    for _ in range(200):
        values, weight = _envelope_inputs(rng, ties)
        n, m = values.shape
        position = np.arange(n, dtype=np.float64)[:, None]
        argmin = envelopes.envelope_argmin(values + weight * position**2, weight)
        cost = values[None, :, :] + weight * (position[:, :, None] - position[None, :, :]) ** 2  # (row, i, col)
        expected = cost.min(axis=1)
        found = np.where(argmin >= 0, np.take_along_axis(values, np.maximum(argmin, 0), 0) + weight * (position - argmin) ** 2,
                         np.inf)
        if ties:
            np.testing.assert_array_equal(found, expected)
        else:
            np.testing.assert_allclose(found, expected, rtol=1e-12)
        assert np.array_equal(argmin < 0, np.isinf(expected))
        by_column = envelopes.envelope_argmin_by_column(values + weight * position**2, weight)
        assert np.array_equal(by_column, argmin.T)  # the grid path's read
        for count in (2, 2 * n * m):  # read at a few points (binary search) or at many (the whole read)
            rows, columns = rng.integers(0, n, count), rng.integers(0, m, count)
            at_points = envelopes.envelope_argmin(values + weight * position**2, weight, at=(rows, columns))
            assert np.array_equal(at_points, argmin[rows, columns])


@pytest.mark.parametrize("ties", [False, True])
def test_comparison_finds_what_the_envelopes_find(ties):
    # The last in-plane pass's two ways: the least value at every read, the first such row (the
    # envelope's own row where no two rows tie), and -1 for a column without values.
    rng = np.random.default_rng(5 + ties)
    for _ in range(200):
        values, weight = _envelope_inputs(rng, ties)
        n, m = values.shape
        count = int(rng.integers(1, 3 * n * m))
        rows, columns = rng.integers(0, n, count), rng.integers(0, m, count)
        found = envelopes.nearest_by_comparison(values, weight, (rows, columns))
        cost = values[:, columns] + weight * (np.arange(n)[:, None] - rows[None, :]) ** 2  # (row i, read)
        least = cost.min(axis=0)
        assert np.array_equal(found < 0, np.isinf(least))
        held = found >= 0
        np.testing.assert_array_equal(found[held], np.argmin(cost, axis=0)[held])
        if not ties:
            position = np.arange(n, dtype=np.float64)[:, None]
            envelope = envelopes.envelope_argmin(values + weight * position**2, weight, at=(rows, columns))
            np.testing.assert_array_equal(found, envelope)


def test_surface_distances_do_not_import_scipy():
    # The point of doing it in numpy: eval starts without scipy's ~0.3 s import, also when the
    # surfaces are far apart (a hole, a prediction that fills the image, two disjoint masks).
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import segkit.metrics._nearest as nearest\n"
        "from segkit.metrics.surface import surface_distances, surface_metrics\n"
        "ref = np.zeros((30, 30, 30), bool); ref[5:20, 6:22, 4:25] = True\n"
        "cavity = ref.copy(); cavity[9:16, 10:18, 8:21] = False\n"
        "far = np.zeros_like(ref); far[26:29, 25:29, 26:29] = True\n"
        "nearest._BRUTE_FORCE_PAIRS = 0\n"
        "for pred in (np.roll(ref, 2, axis=0), cavity, far, np.ones_like(ref)):\n"
        "    for definition in ('surfel', 'voxel'):\n"
        "        surface_metrics(surface_distances(ref, pred, (0.8, 0.8, 1.5), definition))\n"
        "loaded = [m for m in ('scipy.spatial', 'scipy.ndimage') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr


def test_gaps_on_grid_equal_the_nearest_target_along_each_line():
    # The plane transform's grid of gaps, built as one run of planes per target: lines of 1 to 8
    # targets (several between two planes, on a plane, at the line's ends, with midpoints on a plane
    # or between two) and lines of none in the grid, planes before, between and after them.
    rng = np.random.default_rng(23)
    for _ in range(500):
        length, line_count = int(rng.integers(1, 40)), int(rng.integers(1, 15))
        held = {int(line): np.unique(rng.integers(0, length, int(rng.integers(1, 9))))
                for line in rng.choice(line_count, int(rng.integers(0, line_count + 1)), replace=False)}
        keys = np.sort(np.concatenate([line * length + z for line, z in held.items()] + [np.zeros(0, np.int64)]))
        sorted_keys = np.concatenate(([-plane_transform.SENTINEL], keys, [plane_transform.SENTINEL]))
        lines = np.sort(rng.choice(line_count, int(rng.integers(1, line_count + 1)), replace=False))
        planes = np.sort(rng.choice(length, int(rng.integers(1, length + 1)), replace=False))
        gaps = plane_transform.gaps_on_grid(sorted_keys, lines, planes, length)
        expected = [[np.abs(held[line] - plane).min() if line in held else plane_transform.NO_GAP for plane in planes]
                    for line in lines]
        assert gaps.dtype == np.int32
        np.testing.assert_array_equal(gaps, expected)


@pytest.mark.parametrize("block", [1 << 18, 1])
def test_gap_table_equals_the_nearest_target_along_each_line(block, monkeypatch):
    # Lines of 1 to 6 targets (several on a plane's either side, at the line's ends) and lines of
    # none, planes before, between and after them: a look-up gives the distance to the line's
    # nearest target, NO_GAP on an empty line.
    from segkit.metrics import _gap_table

    monkeypatch.setattr(_gap_table, "_BLOCK_ENTRIES", block)  # one block, or one line per block
    rng = np.random.default_rng(29)
    for _ in range(200):
        length, line_count = int(rng.integers(1, 40)), int(rng.integers(1, 12))
        held = {int(line): np.unique(rng.integers(0, length, int(rng.integers(1, 7))))
                for line in rng.choice(line_count, int(rng.integers(1, line_count + 1)), replace=False)}
        keys = np.sort(np.concatenate([line * length + z for line, z in held.items()]))
        sorted_keys = np.concatenate(([-plane_transform.SENTINEL], keys, [plane_transform.SENTINEL]))
        point_planes = rng.integers(0, length, int(rng.integers(1, 12)))
        point_lines = rng.integers(0, line_count, point_planes.size)
        table = _gap_table.GapTable.build(sorted_keys, point_lines * length + point_planes, length, line_count, 10**6)
        for line in range(line_count):
            for point, plane in enumerate(point_planes):
                got = table.gaps[table.row_start[line] + table.point_plane[point]]
                expected = np.abs(held[line] - plane).min() if line in held else _gap_table.NO_GAP
                assert got == expected, (line, plane)
        np.testing.assert_array_equal(table.point_line, point_lines)
