"""Issue 11 item 11: quantify counts a uint8 label map without an 8-byte-per-voxel copy."""

from __future__ import annotations

import tracemalloc

import numpy as np

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
