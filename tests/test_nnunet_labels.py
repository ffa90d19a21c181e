"""dataset.json label parsing (nested region labels), model-folder discovery, per-label cleanup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segkit.errors import SegkitError
from segkit.engines.nnunet.labels import channel_names, declared_values, is_region_based, parse_labels
from segkit.engines.nnunet.model_folder import load_model_folder
from segkit.postprocess import MinSize, clean_mask, parse_min_size


def test_nested_region_labels_like_sciseg():
    labels = parse_labels({"labels": {"background": 0, "sc": [1, 2], "lesion": 2}})
    assert [(lab.name, lab.values, lab.suffix) for lab in labels] == [("sc", (1, 2), "_sc_seg"), ("lesion", (2,), "_lesion_seg")]
    assert declared_values({"labels": {"background": 0, "sc": [1, 2], "lesion": 2}}) == {0, 1, 2}
    assert is_region_based({"labels": {"background": 0, "sc": [1, 2], "lesion": 2}})


def test_plain_labels_and_ignore():
    data = {"labels": {"background": 0, "Left Lung": 1, "tumour": 2, "ignore": 3}}
    labels = parse_labels(data)
    assert [(lab.name, lab.values, lab.suffix) for lab in labels] == [("Left Lung", (1,), "_left_lung_seg"), ("tumour", (2,), "_tumour_seg")]
    assert declared_values(data) == {0, 1, 2, 3} and not is_region_based(data)


@pytest.mark.parametrize(
    "labels, needle",
    [
        ({"sc": 1}, "background"),
        ({"background": 0}, "no foreground"),
        ({"background": 0, "sc": "one"}, "non-negative integer"),
        ({"background": 0, "sc": [0, 1]}, "value 0"),
        ([1, 2], "mapping"),
    ],
)
def test_bad_labels_name_the_problem(labels, needle):
    with pytest.raises(SegkitError, match=needle):
        parse_labels({"labels": labels})


def test_channel_names_in_channel_order():
    assert channel_names({"channel_names": {"1": "T1w", "0": "T2w"}}) == ["T2w", "T1w"]
    assert channel_names({"modality": {"0": "CT"}}) == ["CT"]  # nnU-Net v1 spelling
    with pytest.raises(SegkitError, match="without gaps"):
        channel_names({"channel_names": {"0": "a", "2": "b"}})


def _fake_model(root: Path, folds=("0", "1"), checkpoint="checkpoint_final.pth") -> Path:
    folder = root / "release" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2w"}, "labels": {"background": 0, "sc": [1, 2], "lesion": 2}}))
    (folder / "plans.json").write_text("{}")
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / checkpoint).write_bytes(b"x")
    return folder


def test_model_folder_found_inside_an_unpacked_zip(tmp_path):
    folder = _fake_model(tmp_path)
    (folder / "fold_1" / "checkpoint_best.pth").write_bytes(b"x")
    model = load_model_folder(tmp_path)
    assert model.path == folder and model.folds == ("0", "1") and model.checkpoint == "checkpoint_final.pth"
    assert model.configuration == "3d_fullres" and model.channels == ("T2w",)
    assert [lab.name for lab in model.labels] == ["sc", "lesion"]
    assert load_model_folder(tmp_path, ["1"]).folds == ("1",)
    with pytest.raises(SegkitError, match="fold.*3.*available folds: 0, 1"):
        load_model_folder(tmp_path, ["3"])


def test_checkpoint_best_when_no_final(tmp_path):
    _fake_model(tmp_path, folds=("2",), checkpoint="checkpoint_best.pth")
    model = load_model_folder(tmp_path)
    assert model.checkpoint == "checkpoint_best.pth" and model.folds == ("2",)


def test_no_model_is_a_clear_error(tmp_path):
    (tmp_path / "dataset.json").write_text("{}")
    with pytest.raises(SegkitError, match="no trained nnU-Net v2 model"):
        load_model_folder(tmp_path)


def test_remove_small_largest_and_fill_holes():
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[2:10, 2:10, 2:10] = 1
    mask[5, 5, 5] = 0  # a hole
    mask[15:17, 15:17, 15:17] = 1  # 8 voxels
    mask[18, 2, 2] = 1  # 1 voxel
    assert parse_min_size("5vox") == MinSize(5.0, "vox") and parse_min_size("2.5mm3") == MinSize(2.5, "mm3")
    with pytest.raises(SegkitError, match="5mm3 or 5vox"):
        parse_min_size("5")
    small_gone = clean_mask(mask, remove_small=parse_min_size("5vox"))
    assert small_gone[18, 2, 2] == 0 and small_gone[15, 15, 15] == 1
    # 8 voxels of 2 mm3 = 16 mm3 survive a 10 mm3 threshold but not a 20 mm3 one
    assert clean_mask(mask, remove_small=parse_min_size("10mm3"), voxel_volume_mm3=2.0)[15, 15, 15] == 1
    assert clean_mask(mask, remove_small=parse_min_size("20mm3"), voxel_volume_mm3=2.0)[15, 15, 15] == 0
    largest = clean_mask(mask, largest=True)
    assert largest.sum() == 8**3 - 1
    filled = clean_mask(mask, largest=True, fill_holes=True)
    assert filled.sum() == 8**3 and set(np.unique(filled)) == {0, 1}


def test_cleanup_keeps_an_inner_region_inside_its_outer_one():
    """--largest on the cord may drop a cord piece that holds lesion voxels; the lesion goes with it."""
    from segkit.postprocess import split_labels
    from segkit.engines.nnunet.labels import NnunetLabel

    label_map = np.zeros((20, 20, 20), dtype=np.uint8)
    label_map[2:12, 2:12, 2:12] = 1  # the cord's big piece
    label_map[5:7, 5:7, 5:7] = 2  # a lesion inside it
    label_map[15:18, 15:18, 15:18] = 2  # a small detached piece that is all lesion
    labels = [NnunetLabel("sc", (1, 2)), NnunetLabel("lesion", (2,))]
    outputs = split_labels(label_map, labels, largest=True)
    assert not outputs["sc"][15:18, 15:18, 15:18].any()
    assert outputs["lesion"].sum() == 8 and not (outputs["lesion"] & ~outputs["sc"]).any()
    # without cleanup nothing changes: the label map already nests
    outputs = split_labels(label_map, labels)
    assert outputs["lesion"].sum() == 8 + 27 and outputs["sc"].sum() == 1000 + 27
