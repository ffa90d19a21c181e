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
