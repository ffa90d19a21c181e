"""Issue 11 item 11: quantify counts a uint8 label map without an 8-byte-per-voxel copy."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from segkit.quantify.volumes import label_volumes


def test_label_volumes_peak_memory_is_a_slab_not_the_map():
    labels = np.zeros((256, 256, 200), np.uint8)  # 13 M voxels: a whole-map intp copy is 105 MB
    labels[:10] = 1
    labels[100:120] = 3
    tracemalloc.start()
    try:
        rows = label_volumes(labels, 1.0, [1, 3])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r["voxel_count"] for r in rows] == [10 * 256 * 200, 20 * 256 * 200]
    assert peak < 0.5 * labels.size * 8  # far below one intp copy of the map


def test_component_sizes_by_slab_equal_bincount_and_clean_masks_keep_the_same_voxels(monkeypatch):
    """The slab-wise count (quantify, --largest/--remove-small, lpm_nnsam2's rebuild) equals
    np.bincount on any memory order, also when a slab ends inside a component."""
    from scipy import ndimage

    from segkit.postprocess import masks
    from segkit.tasks.lpm_nnsam2.rebuild import largest_component

    rng = np.random.default_rng(1)
    mask = ndimage.binary_opening(rng.random((40, 30, 20)) < 0.35)
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    monkeypatch.setattr(masks, "SLAB_VOXELS", 997)
    for values in (components, np.asfortranarray(components), components[::-1]):
        assert np.array_equal(masks.bincount_by_slab(values, count + 1), np.bincount(values.ravel(), minlength=count + 1))
    sizes = np.bincount(components.ravel())[1:]
    expected = np.isin(components, np.flatnonzero(sizes >= 0.2 * sizes.max()) + 1)
    assert count > 3 and np.array_equal(largest_component(mask), expected)
    framed, framed_expected = np.zeros((60, 45, 33), bool), np.zeros((60, 45, 33), bool)
    framed[7:47, 11:41, 5:25], framed_expected[7:47, 11:41, 5:25] = mask, expected
    assert np.array_equal(largest_component(framed), framed_expected)  # labelled inside the mask's box
    largest = components == 1 + int(np.argmax(sizes))
    assert np.array_equal(masks.clean_mask(mask, largest=True).astype(bool), largest)


@pytest.mark.parametrize("steps", [dict(largest=True), dict(fill_holes=True), dict(remove_small="25vox"),
                                   dict(largest=True, fill_holes=True), dict(remove_small="40vox", fill_holes=True)])
@pytest.mark.parametrize("where", ["inside", "at_the_border"])
def test_cleaning_inside_the_masks_box_equals_cleaning_the_whole_image(steps, where):
    """Objects with holes, some open to the box's faces, others closed; the box in the image's
    middle or against its border: the same voxels as scipy on the whole image."""
    from scipy import ndimage

    from segkit.postprocess.masks import clean_mask, parse_min_size

    rng = np.random.default_rng(4)
    inner = ndimage.binary_opening(rng.random((30, 26, 18)) < 0.55)
    inner[3:12, 4:14, 3:10] = True
    inner[6:9, 7:10, 5:7] = False  # a closed hole
    image = np.zeros((50, 44, 30), bool)
    origin = (9, 8, 6) if where == "inside" else (0, 18, 12)
    image[origin[0]:origin[0] + 30, origin[1]:origin[1] + 26, origin[2]:origin[2] + 18] = inner
    structure = ndimage.generate_binary_structure(3, 3)
    expected = image.copy()
    if "remove_small" in steps or steps.get("largest"):
        components, count = ndimage.label(expected, structure=structure)
        sizes = np.bincount(components.ravel())[1:]
        keep = sizes >= (parse_min_size(steps["remove_small"]).voxels(1.0) if "remove_small" in steps else 0)
        if steps.get("largest"):
            keep = np.arange(count) == int(np.argmax(np.where(keep, sizes, -1)))
        expected = np.concatenate([[False], keep])[components]
    if steps.get("fill_holes"):
        expected = ndimage.binary_fill_holes(expected)
    options = {**steps, "remove_small": parse_min_size(steps.get("remove_small"))}
    got = clean_mask(image.copy(), **options).astype(bool)
    assert np.array_equal(got, expected) and not np.array_equal(expected, image)
