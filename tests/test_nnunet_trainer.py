"""segkit's changes to nnU-Net's training loader and augmentation (the trainer runs for real in
test_nnunet_end_to_end.py and test_lpm_train.py; these pin the two decisions on their own)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nnunetv2")


def clamped_loader(patch_size, need_to_pad=(0, 0, 0), has_ignore=False):
    """The loader's bbox logic only: get_bbox reads these four attributes, not the dataset."""
    from segkit.engines.nnunet.trainer import EdgeClampedDataLoader

    loader = object.__new__(EdgeClampedDataLoader)
    loader.patch_size = np.array(patch_size)
    loader.need_to_pad = np.array(need_to_pad)
    loader.has_ignore = has_ignore
    loader.annotated_classes_key = (1, 2)
    return loader


@pytest.mark.parametrize("has_ignore", [False, True])
def test_a_patch_centred_near_the_far_edge_stays_inside_an_image_as_small_as_the_patch(has_ignore):
    loader = clamped_loader((8, 48, 56), has_ignore=has_ignore)
    top_voxel = np.array([[0, 7, 30, 30]])  # (channel, z, y, x) on the last slice
    locations = {1: top_voxel, 2: top_voxel, (1, 2): top_voxel}
    for _ in range(20):
        lower, upper = loader.get_bbox(np.array([8, 48, 56]), force_fg=True, class_locations=locations)
        assert lower == [0, 0, 0] and upper == [8, 48, 56]  # nnU-Net alone gives z 3..11: 3 slices of padding


def test_the_far_edge_keeps_the_padding_nnunet_allows_for_augmentation():
    # a 12-slice patch for an 8-slice image: nnU-Net pads 2 above and 2 below, never more
    loader = clamped_loader((12, 48, 56))
    voxel = np.array([[0, 7, 30, 30]])
    lower, upper = loader.get_bbox(np.array([8, 48, 56]), force_fg=True, class_locations={1: voxel})
    assert (lower[0], upper[0]) == (-2, 10)
    # larger images: the patch may sit anywhere inside, as before
    loader = clamped_loader((8, 32, 32))
    voxel = np.array([[0, 10, 20, 20]])
    lower, upper = loader.get_bbox(np.array([20, 64, 64]), force_fg=True, class_locations={1: voxel})
    assert lower == [6, 4, 4] and upper == [14, 36, 36]
