"""Pseudo-label filtering: top-decile IoU slices, ignore label, smoothness and agreement."""

from __future__ import annotations

import json

import numpy as np

from segkit.tasks.lpm_nnsam2 import selection
from segkit.engines.nnunet.labels import declared_values


def test_top_decile_threshold_keeps_a_tenth_of_the_frames():
    sums = np.linspace(0.0, 2.0, 100)
    threshold = selection.iou_threshold(sums)
    assert (sums >= threshold).sum() == 10


def test_area_ratio_flags_jumps_between_consecutive_slices():
    smooth = np.zeros((20, 20, 3), np.uint8)
    smooth[5:15, 5:15, :] = 1
    assert selection.max_area_ratio(smooth) == 1.0
    jumpy = smooth.copy()
    jumpy[5:15, 5:10, 1] = 0  # half the area on the middle slice
    assert selection.max_area_ratio(jumpy) == 2.0


def test_cases_must_be_smooth_and_agree_and_only_the_top_max2_20pct_are_kept():
    rows = [{"case": f"c{i}", "max_area_ratio": 1.1, "dice_vs_previous": 0.96 + i / 1000} for i in range(10)]
    rows.append({"case": "jumpy", "max_area_ratio": 1.6, "dice_vs_previous": 0.999})
    rows.append({"case": "disagrees", "max_area_ratio": 1.0, "dice_vs_previous": 0.90})
    kept = [r["case"] for r in selection.select_cases(rows) if r["kept"]]
    assert sorted(kept) == ["c7", "c8", "c9"]  # max(2, ceil(0.2 * 12)) = 3, best agreement first


def test_round_one_labels_mark_unselected_slices_ignore(tmp_path):
    from segkit.tasks.lpm_nnsam2.rounds import IGNORE, _dataset_json

    _dataset_json(tmp_path, 1, "ct", with_ignore=True)
    data = json.loads((tmp_path / "dataset.json").read_text())
    assert data["labels"]["ignore"] == IGNORE == max(data["labels"].values())
    assert declared_values(data) == {0, 1, 2, 3}


def test_a_case_missing_a_side_is_never_kept():
    rows = [{"case": c, "max_area_ratio": 1.0, "dice_vs_previous": d} for c, d in (("a", 0.99), ("b", 0.97), ("c", 0.96))]
    rows = selection.select_cases(rows, usable={"b", "c"})
    assert {r["case"]: r["kept"] for r in rows} == {"a": False, "b": True, "c": True}
