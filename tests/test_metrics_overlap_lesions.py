"""Overlap counts, lesion-wise detection (ISLES'22 F1, 26-connectivity) and BraTS regions."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.metrics.evaluate import EvalOptions, evaluate_label_maps, parse_metrics, summarize
from segkit.metrics.lesionwise import lesion_detection
from segkit.metrics.overlap import overlap_metrics
from segkit.metrics.regions import brats_regions


def test_overlap_counts_and_volumes():
    ref = np.zeros((10, 10, 10), bool)
    pred = ref.copy()
    ref[0:4] = True  # 400 voxels
    pred[2:5] = True  # 300 voxels, 200 shared
    m = overlap_metrics(ref, pred, voxel_volume_mm3=2.0)
    assert (m["tp"], m["fp"], m["fn"]) == (200, 100, 200)
    assert m["dice"] == pytest.approx(400 / 700)
    assert m["iou"] == pytest.approx(200 / 500)
    assert m["precision"] == pytest.approx(200 / 300) and m["recall"] == pytest.approx(0.5)
    assert m["ref_volume_ml"] == pytest.approx(0.8) and m["pred_volume_ml"] == pytest.approx(0.6)
    assert m["volume_diff_ml"] == pytest.approx(-0.2) and m["abs_volume_diff_ml"] == pytest.approx(0.2)


def test_overlap_empty_conventions():
    empty = np.zeros((4, 4), bool)
    some = empty.copy()
    some[1, 1] = True
    both = overlap_metrics(empty, empty, 1.0)
    assert both["dice"] == 1.0 and both["iou"] == 1.0
    one = overlap_metrics(some, empty, 1.0)
    assert one["dice"] == 0.0 and one["precision"] is None and one["recall"] == 0.0


def test_lesion_f1_diagonal_voxels_are_one_lesion_and_one_voxel_is_a_hit():
    ref = np.zeros((12, 12, 12), bool)
    pred = ref.copy()
    ref[1, 1, 1] = ref[2, 2, 2] = True  # corner-touching: one lesion under 26-connectivity
    ref[6:9, 6:9, 6:9] = True  # hit by a single predicted voxel
    ref[10, 1, 1] = True  # missed
    pred[8, 8, 8] = True
    pred[1, 10, 10] = True  # false positive
    summary, table = lesion_detection(ref, pred, voxel_volume_mm3=1.0)
    assert summary["n_ref_lesions"] == 3 and summary["n_pred_lesions"] == 2
    assert (summary["lesion_tp"], summary["lesion_fp"], summary["lesion_fn"]) == (1, 1, 2)
    assert summary["lesion_f1"] == pytest.approx(1 / (1 + 3 / 2))
    assert summary["lesion_count_abs_diff"] == 1
    detected = [row["detected"] for row in table if row["source"] == "ref"]
    assert sorted(detected) == [False, False, True]
    assert len(table) == 5


def test_lesion_f1_both_empty_is_one():
    empty = np.zeros((5, 5, 5), bool)
    assert lesion_detection(empty, empty, 1.0)[0]["lesion_f1"] == 1.0


def test_brats_regions_and_legacy_label_4():
    assert brats_regions() == {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    assert brats_regions(legacy_et_label_4=True)["ET"] == (4,)
    ref = np.zeros((6, 6, 6), np.uint8)
    ref[0:2], ref[2:4], ref[4:6] = 1, 2, 3
    pred = ref.copy()
    pred[4:6] = 2  # enhancing tumour called oedema
    rows, _ = evaluate_label_maps(ref, pred, (1, 1, 1), 1.0, brats_regions(), EvalOptions(parse_metrics("dice")))
    dice = {row["label"]: row["dice"] for row in rows}
    assert dice["WT"] == 1.0
    assert dice["TC"] == pytest.approx(2 * 72 / (144 + 72))
    assert dice["ET"] == 0.0
    assert [row["status"] for row in rows] == ["ok", "ok", "pred_empty"]


def test_summary_ignores_nulls_and_counts_empty_cases():
    rows = [
        {"case": "a", "label": "1", "status": "ok", "dice": 0.8, "hd95_mm": 2.0},
        {"case": "b", "label": "1", "status": "pred_empty", "dice": 0.0, "hd95_mm": None},
        {"case": "c", "label": "1", "status": "ok", "dice": 0.6, "hd95_mm": 4.0},
    ]
    out = {row["case"]: row for row in summarize(rows, ["dice", "hd95_mm"])}
    assert out["mean"]["dice"] == pytest.approx(1.4 / 3) and out["mean"]["hd95_mm"] == pytest.approx(3.0)
    assert out["median"]["hd95_mm"] == pytest.approx(3.0)
    assert out["std_ddof1"]["hd95_mm"] == pytest.approx(np.std([2.0, 4.0], ddof=1))
    assert out["mean"]["n_cases"] == 3 and out["mean"]["n_pred_empty"] == 1 and out["mean"]["n_ref_empty"] == 0


def test_unknown_metric_is_a_user_error():
    from segkit.errors import SegkitError

    with pytest.raises(SegkitError, match="unknown metric"):
        parse_metrics("dice,hd99")
    assert parse_metrics("surface") == ("hd", "hd95", "assd", "masd", "nsd")


def test_overlap_counts_in_slabs_equal_the_whole_count():
    from segkit.metrics.overlap import _count_both

    rng = np.random.default_rng(2)
    ref, pred = rng.random((37, 11, 5)) > 0.4, rng.random((37, 11, 5)) > 0.6
    expected = int(np.count_nonzero(ref & pred))
    assert _count_both(ref, pred, slab=1) == expected == _count_both(ref, pred, slab=10**9)
    assert _count_both(ref, pred, slab=7 * 55) == expected


def test_region_mask_of_a_binary_map_is_a_read_only_view():
    from segkit.metrics.regions import region_mask

    binary = (np.random.default_rng(4).random((6, 5, 4)) > 0.5).astype(np.uint8)
    mask = region_mask(binary, (1,))
    assert mask.dtype == bool and np.shares_memory(mask, binary) and not mask.flags.writeable
    np.testing.assert_array_equal(mask, binary == 1)
    labels = binary * 2 + (binary == 0)  # labels 1 and 2: a copy, and the right voxels
    np.testing.assert_array_equal(region_mask(labels, (1,)), binary == 0)
    assert not np.shares_memory(region_mask(labels, (1,)), labels)
