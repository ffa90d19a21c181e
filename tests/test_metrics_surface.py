"""Surface distances: cross-checked against DeepMind surface-distance and MONAI, plus known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segkit.metrics._surfel_table import contour_length_table_2d, surfel_area_table_3d
from segkit.metrics.surface import surface_distances, surface_metrics

TOL = 1.3
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


def _random_pair(rng, shape):
    ref = ndimage.binary_opening(rng.random(shape) > 0.55) | (rng.random(shape) > 0.98)
    pred = ndimage.binary_dilation(ref) ^ (rng.random(shape) > 0.96)
    return ref, pred


def _cases():
    rng = np.random.default_rng(7)
    cases = []
    for shape in [(24, 20, 16), (31, 9, 12), (40, 33)]:
        ref, pred = _random_pair(rng, shape)
        ref[0] = True  # touch the image border on one side
        pred[..., -1] = True  # and on another
        spacing = tuple(rng.uniform(0.4, 2.5, size=len(shape)))
        cases.append((ref, pred, spacing))
    single_a = np.zeros((9, 8, 7), bool)
    single_b = single_a.copy()
    single_a[2, 3, 4] = True
    single_b[6, 3, 1] = True
    cases.append((single_a, single_b, (0.8, 0.8, 1.5)))
    corner = np.zeros((6, 6, 6), bool)
    corner[0, 0, 0] = True
    cases.append((corner, ~corner, (1.0, 2.0, 0.5)))
    return cases


@pytest.mark.parametrize("ref,pred,spacing", _cases())
def test_surfel_metrics_equal_deepmind(ref, pred, spacing):
    sd = pytest.importorskip("surface_distance")
    theirs = sd.compute_surface_distances(ref, pred, spacing)
    ours = surface_metrics(surface_distances(ref, pred, spacing, "surfel"), tolerance_mm=TOL)
    forward, backward = sd.compute_average_surface_distance(theirs)
    area_gt, area_pred = theirs["surfel_areas_gt"], theirs["surfel_areas_pred"]
    pooled = (np.sum(theirs["distances_gt_to_pred"] * area_gt) + np.sum(theirs["distances_pred_to_gt"] * area_pred)) / (
        area_gt.sum() + area_pred.sum()
    )
    assert ours["status"] == "ok"
    np.testing.assert_allclose(ours["hd95"], sd.compute_robust_hausdorff(theirs, 95), rtol=1e-6)
    np.testing.assert_allclose(ours["hd"], sd.compute_robust_hausdorff(theirs, 100), rtol=1e-6)
    np.testing.assert_allclose(ours["masd"], (forward + backward) / 2, rtol=1e-6)
    np.testing.assert_allclose(ours["assd"], pooled, rtol=1e-6)
    np.testing.assert_allclose(ours["nsd"], sd.compute_surface_dice_at_tolerance(theirs, TOL), rtol=1e-6)


@pytest.mark.parametrize("ref,pred,spacing", _cases())
def test_voxel_metrics_equal_monai(ref, pred, spacing):
    pytest.importorskip("monai")
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    y_pred = torch.tensor(pred[None, None].astype(np.float32))
    y = torch.tensor(ref[None, None].astype(np.float32))
    kwargs = {"include_background": True, "spacing": list(spacing)}
    ours = surface_metrics(surface_distances(ref, pred, spacing, "voxel"), tolerance_mm=TOL)
    # MONAI computes in float32: compare at float32 precision.
    np.testing.assert_allclose(ours["hd95"], compute_hausdorff_distance(y_pred, y, percentile=95, **kwargs).item(), rtol=1e-5)
    np.testing.assert_allclose(ours["hd"], compute_hausdorff_distance(y_pred, y, **kwargs).item(), rtol=1e-5)
    np.testing.assert_allclose(
        ours["assd"], compute_average_surface_distance(y_pred, y, symmetric=True, **kwargs).item(), rtol=1e-5
    )
    np.testing.assert_allclose(ours["nsd"], compute_surface_dice(y_pred, y, [TOL], **kwargs).item(), rtol=1e-5)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 1.5), (0.3, 2.7, 1.1)])
def test_surfel_area_table_equals_deepmind(spacing):
    lookup = pytest.importorskip("surface_distance.lookup_tables")
    np.testing.assert_allclose(
        surfel_area_table_3d(spacing), lookup.create_table_neighbour_code_to_surface_area(spacing), rtol=1e-12
    )
    np.testing.assert_allclose(
        contour_length_table_2d(spacing[:2]), lookup.create_table_neighbour_code_to_contour_length(spacing[:2]),
        rtol=1e-12,
    )


def test_surfel_table_is_reproducible_from_lorensen_marching_cubes():
    measure = pytest.importorskip("skimage.measure")
    spacing = np.array([0.7, 1.3, 2.1])
    expected = np.zeros(256)
    for code in range(1, 255):
        corners = bin(code).count("1")
        source = code if corners <= 4 else 255 - code
        volume = np.zeros((2, 2, 2))
        for i, j, k in np.ndindex(2, 2, 2):
            volume[i, j, k] = (source >> (7 - (4 * i + 2 * j + k))) & 1
        verts, faces, _, _ = measure.marching_cubes(volume, 0.5, method="lorensen", allow_degenerate=True)
        p = verts * spacing
        cross = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
        expected[code] = 0.5 * np.linalg.norm(cross, axis=1).sum()
    np.testing.assert_allclose(surfel_area_table_3d(spacing), expected, rtol=1e-12)


def _sphere(shape, centre, radius_mm, spacing):
    grid = np.indices(shape).astype(float)
    offsets = [(g - c) * s for g, c, s in zip(grid, centre, spacing)]
    return sum(o**2 for o in offsets) <= radius_mm**2


@pytest.mark.parametrize("definition", ["surfel", "voxel"])
def test_concentric_spheres_distance_is_radius_difference(definition):
    spacing = (0.8, 0.8, 1.5)
    shape = (60, 60, 34)
    centre = (30, 30, 17)
    outer = _sphere(shape, centre, 20.0, spacing)
    inner = _sphere(shape, centre, 14.0, spacing)
    m = surface_metrics(surface_distances(outer, inner, spacing, definition), tolerance_mm=1.0)
    # The radius difference is 6 mm; the discretisation moves it by at most about one voxel.
    assert abs(m["masd"] - 6.0) < 1.0
    assert abs(m["hd95"] - 6.0) < 1.5
    assert m["nsd"] == 0.0  # no surface element within 1 mm of the other surface
    assert m["hd"] >= m["hd95"] >= m["masd"] > 0


@pytest.mark.parametrize("definition", ["surfel", "voxel"])
def test_identical_masks_have_zero_distance_and_nsd_one(definition):
    mask = _sphere((20, 20, 20), (10, 10, 10), 6.0, (1, 1, 1))
    m = surface_metrics(surface_distances(mask, mask, (1, 1, 1), definition), tolerance_mm=0.0)
    assert m == {"hd": 0.0, "hd95": 0.0, "assd": 0.0, "masd": 0.0, "nsd": 1.0, "status": "ok"}


@pytest.mark.parametrize("definition", ["surfel", "voxel"])
def test_metrics_are_symmetric(definition):
    rng = np.random.default_rng(3)
    ref, pred = _random_pair(rng, (20, 18, 15))
    a = surface_metrics(surface_distances(ref, pred, (0.5, 1.0, 2.0), definition))
    b = surface_metrics(surface_distances(pred, ref, (0.5, 1.0, 2.0), definition))
    for key in ("hd", "hd95", "assd", "masd", "nsd"):
        assert a[key] == pytest.approx(b[key], rel=1e-12)


@pytest.mark.parametrize("definition", ["surfel", "voxel"])
def test_empty_masks(definition):
    empty = np.zeros((8, 8, 8), bool)
    full = empty.copy()
    full[2:5, 2:5, 2:5] = True
    both = surface_metrics(surface_distances(empty, empty, (1, 1, 1), definition))
    assert both == {"hd": 0.0, "hd95": 0.0, "assd": 0.0, "masd": 0.0, "nsd": 1.0, "status": "both_empty"}
    ref_empty = surface_metrics(surface_distances(empty, full, (1, 1, 1), definition))
    assert ref_empty["status"] == "ref_empty" and ref_empty["nsd"] == 0.0
    assert all(ref_empty[k] is None for k in ("hd", "hd95", "assd", "masd"))
    pred_empty = surface_metrics(surface_distances(full, empty, (1, 1, 1), definition))
    assert pred_empty["status"] == "pred_empty" and pred_empty["hd95"] is None


def test_cropping_does_not_change_the_result():
    rng = np.random.default_rng(11)
    ref, pred = _random_pair(rng, (12, 10, 9))
    big_ref = np.zeros((40, 30, 50), bool)
    big_pred = big_ref.copy()
    big_ref[20:32, 5:15, 30:39] = ref
    big_pred[20:32, 5:15, 30:39] = pred
    small = surface_metrics(surface_distances(ref, pred, (1.0, 0.7, 1.2)))
    big = surface_metrics(surface_distances(big_ref, big_pred, (1.0, 0.7, 1.2)))
    # Away from the border the padding is the same zeros the crop adds: identical values.
    interior = surface_metrics(surface_distances(np.pad(ref, 1), np.pad(pred, 1), (1.0, 0.7, 1.2)))
    assert big == interior
    assert small["status"] == "ok"


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        surface_distances(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)), (1, 1, 1))
    with pytest.raises(ValueError, match="definition"):
        surface_distances(np.zeros((3, 3, 3)), np.zeros((3, 3, 3)), (1, 1, 1), "mesh")


# --- hard pairs: surfaces far apart, at small sizes, against both references -------------------


def _ellipsoid(shape, centre, semi_axes_mm, spacing):
    grid = np.indices(shape).astype(float)
    return sum((((g - c) * s) / a) ** 2 for g, c, s, a in zip(grid, centre, spacing, semi_axes_mm)) <= 1.0


def _hard_pairs():
    """(name, ref, pred, spacing): the benchmark's hard cases (benchmarks/bench_eval_hard.py), small."""
    spacing = (0.8, 0.8, 1.5)
    shape = (56, 50, 30)
    centre = tuple(n / 2 for n in shape)
    organ = _ellipsoid(shape, centre, (14.0, 12.0, 15.0), spacing)
    shifted = _ellipsoid(shape, (centre[0] + 2, centre[1] - 1, centre[2]), (14.5, 12.5, 15.0), spacing)
    hole = _ellipsoid(shape, centre, (7.0, 6.0, 7.5), spacing)
    lesion = _ellipsoid(shape, (4, 45, 3), (2.5, 2.5, 2.5), spacing)
    blob = _ellipsoid(shape, (51, 4, 26), (3.0, 3.0, 3.0), spacing)
    left = _ellipsoid(shape, (12, 25, 15), (7.0, 8.0, 12.0), spacing)
    right = _ellipsoid(shape, (44, 25, 15), (7.5, 7.0, 11.0), spacing)
    one = np.zeros(shape, bool)
    one[28, 25, 15] = True
    slab = np.zeros(shape, bool)
    slab[:, :, 11:19] = True  # fills whole slices: whole planes of surface inside the image
    flat = organ[:, :, 15]
    return [
        ("shifted", organ, shifted, spacing),
        ("cavity", organ, shifted & ~hole, spacing),
        ("missed_lesion", organ | lesion, shifted, spacing),
        ("leak", organ, shifted | blob, spacing),
        ("disjoint", left, right, spacing),
        ("one_voxel", organ, one, spacing),
        ("fills_volume", organ, np.ones(shape, bool), spacing),
        ("slab", organ, slab, spacing),
        ("cavity_2d", flat, flat & ~hole[:, :, 15], (0.7, 1.2)),
        ("fills_2d", flat, np.ones(flat.shape, bool), (0.7, 1.2)),
    ]


HARD = _hard_pairs()
# The default, the line search with its gaps found by binary search or read from the table, and
# every far point through the plane transform (no brute force, no line search).
FORCED = {"default": {}, "binary_search": {"_BRUTE_FORCE_PAIRS": 0, "_GAP_TABLE_ENTRIES": 0},
          "gap_table": {"_BRUTE_FORCE_PAIRS": 0, "_GAP_TABLE_PER_POINT": 10**9},
          "transform": {"_BRUTE_FORCE_PAIRS": 0, "_MIN_BUDGET": 0, "_BUDGET_PER_POINT": 0}}


@pytest.fixture(params=sorted(FORCED))
def nearest_stage(request, monkeypatch):
    import segkit.metrics._nearest as nearest

    for name, value in FORCED[request.param].items():
        monkeypatch.setattr(nearest, name, value)
    return request.param


@pytest.mark.parametrize("name,ref,pred,spacing", HARD, ids=[case[0] for case in HARD])
def test_hard_pairs_equal_deepmind(name, ref, pred, spacing, nearest_stage):
    sd = pytest.importorskip("surface_distance")
    theirs = sd.compute_surface_distances(ref, pred, spacing)
    area_gt, area_pred = theirs["surfel_areas_gt"], theirs["surfel_areas_pred"]
    pooled = (np.sum(theirs["distances_gt_to_pred"] * area_gt) + np.sum(theirs["distances_pred_to_gt"] * area_pred)) / (
        area_gt.sum() + area_pred.sum()
    )
    for ours in (surface_metrics(surface_distances(ref, pred, spacing, "surfel"), tolerance_mm=TOL),
                 surface_metrics(surface_distances(pred, ref, spacing, "surfel"), tolerance_mm=TOL)):
        assert ours["status"] == "ok"
        np.testing.assert_allclose(ours["hd95"], sd.compute_robust_hausdorff(theirs, 95), rtol=1e-9)
        np.testing.assert_allclose(ours["hd"], sd.compute_robust_hausdorff(theirs, 100), rtol=1e-9)
        np.testing.assert_allclose(ours["masd"], np.mean(sd.compute_average_surface_distance(theirs)), rtol=1e-9)
        np.testing.assert_allclose(ours["assd"], pooled, rtol=1e-9)
        np.testing.assert_allclose(ours["nsd"], sd.compute_surface_dice_at_tolerance(theirs, TOL), rtol=1e-9, atol=1e-12)
    # Apart from the shifted pair, the surfaces are far apart somewhere (more than the line
    # search's first ring of offsets, 3.2 mm here).
    assert name == "shifted" or sd.compute_robust_hausdorff(theirs, 100) > 5.0


@pytest.mark.parametrize("name,ref,pred,spacing", HARD, ids=[case[0] for case in HARD])
def test_hard_pairs_equal_monai(name, ref, pred, spacing, nearest_stage):
    pytest.importorskip("monai")
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    y_pred = torch.tensor(pred[None, None].astype(np.float32))
    y = torch.tensor(ref[None, None].astype(np.float32))
    kwargs = {"include_background": True, "spacing": list(spacing)}
    ours = surface_metrics(surface_distances(ref, pred, spacing, "voxel"), tolerance_mm=TOL)
    # MONAI computes in float32: compare at float32 precision.
    np.testing.assert_allclose(ours["hd95"], compute_hausdorff_distance(y_pred, y, percentile=95, **kwargs).item(), rtol=1e-6)
    np.testing.assert_allclose(ours["hd"], compute_hausdorff_distance(y_pred, y, **kwargs).item(), rtol=1e-6)
    np.testing.assert_allclose(
        ours["assd"], compute_average_surface_distance(y_pred, y, symmetric=True, **kwargs).item(), rtol=1e-6
    )
    np.testing.assert_allclose(ours["nsd"], compute_surface_dice(y_pred, y, [TOL], **kwargs).item(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("definition", ["surfel", "voxel"])
@pytest.mark.parametrize("shape", [(23, 17, 12), (31, 26)])
def test_surface_extraction_in_slabs_and_any_memory_order_gives_the_same_points(definition, shape, monkeypatch):
    """A Fortran-ordered mask (as nibabel reads NIfTI) is processed as its transpose, with the
    codes' corner bits mapped back: the same points and the same weights, on an anisotropic grid."""
    import segkit.metrics.surface as surface

    rng = np.random.default_rng(13)
    ref, pred = _random_pair(rng, shape)
    pred[..., :4] = True  # touches the image border
    spacing = (0.9, 0.7, 1.6)[: len(shape)]
    whole = surface_distances(ref, pred, spacing, definition)
    fortran = surface_distances(np.asfortranarray(ref), np.asfortranarray(pred), spacing, definition)
    strided = surface_distances(np.repeat(ref, 2, axis=0)[::2], np.asfortranarray(pred)[:, ::1], spacing, definition)
    monkeypatch.setattr(surface, "_SLAB_VOXELS", 1)  # one row per slab
    sliced = surface_distances(ref, pred, spacing, definition)
    sliced_fortran = surface_distances(np.asfortranarray(ref), np.asfortranarray(pred), spacing, definition)
    for other in (fortran, strided, sliced, sliced_fortran):
        for a, b in ((whole.ref_to_pred, other.ref_to_pred), (whole.pred_to_ref, other.pred_to_ref)):
            np.testing.assert_array_equal(a.distances, b.distances)
            np.testing.assert_array_equal(a.weights, b.weights)
    assert whole.ref_to_pred.distances.max() > 0
    if definition == "surfel":  # several surfel areas: a wrong bit order would show
        assert len(np.unique(np.concatenate([whole.ref_to_pred.weights, whole.pred_to_ref.weights]))) >= 3


def test_codes_of_the_transposed_array_map_back_to_the_same_cube():
    """Every 2x2(x2) neighbourhood, coded on its transpose and mapped back, gives its own code."""
    from segkit.metrics.surface import _code_in_original_axes, _neighbourhood_codes

    for ndim in (2, 3):
        mapping = _code_in_original_axes(ndim)
        for code in range(2 ** (2**ndim)):
            bits = [(code >> (2**ndim - 1 - c)) & 1 for c in range(2**ndim)]
            cube = np.array(bits, dtype=np.uint8).reshape((2,) * ndim)
            assert int(_neighbourhood_codes(cube).item()) == code
            assert mapping[int(_neighbourhood_codes(np.ascontiguousarray(cube.T)).item())] == code


def test_surface_points_are_argwhere_points():
    from segkit.metrics.surface import _points

    rng = np.random.default_rng(0)
    for shape in [(7,), (5, 9), (6, 7, 8), (0, 4, 5)]:
        for fraction in (0.0, 0.1, 0.9, 1.0):
            mask = rng.random(shape) < fraction
            assert np.array_equal(_points(mask), np.argwhere(mask))



def _masks_with_filled_lines(shape):
    full = np.ones(shape, bool)
    cavity = full.copy()
    cavity[tuple(slice(n // 3, n // 2 + 1) for n in shape)] = False
    plate = np.zeros(shape, bool)  # one voxel thick along the last axis: both ends of a line coincide
    plate[..., shape[-1] // 2] = True
    plate[(slice(0, 3),) + (slice(None),) * (len(shape) - 1)] = False
    block = np.zeros(shape, bool)  # a box that touches the image border
    block[(slice(0, shape[0] - 2),) + tuple(slice(1, n) for n in shape[1:])] = True
    return {"full": full, "cavity": cavity, "plate": plate, "block": block}


@pytest.mark.parametrize("definition", ["surfel", "voxel"])
@pytest.mark.parametrize("shape", [(23, 17, 12), (31, 26)])
def test_surface_points_read_line_by_line_equal_those_of_whole_slabs(definition, shape, monkeypatch):
    """Where few lines hold both values, extraction reads only those and copies the points of the
    lines full of the mask: forced on or off, in one-row slabs or whole ones, C or Fortran order,
    the same distances and weights."""
    import segkit.metrics.surface as surface

    other, _ = _random_pair(np.random.default_rng(17), shape)
    spacing = (0.9, 0.7, 1.6)[: len(shape)]
    for name, mask in _masks_with_filled_lines(shape).items():
        results = []
        for sparse, slab in ((10**9, 1 << 21), (0, 1 << 21), (0, 1)):
            monkeypatch.setattr(surface, "_SPARSE_LINES", sparse)
            monkeypatch.setattr(surface, "_SLAB_VOXELS", slab)
            for layout in (np.ascontiguousarray, np.asfortranarray):
                results.append(surface_distances(layout(mask), layout(other), spacing, definition))
        for got in results[1:]:
            for a, b in ((results[0].ref_to_pred, got.ref_to_pred), (results[0].pred_to_ref, got.pred_to_ref)):
                np.testing.assert_array_equal(a.distances, b.distances, err_msg=name)
                np.testing.assert_array_equal(a.weights, b.weights, err_msg=name)
        assert results[0].ref_to_pred.distances.size > 0, name
