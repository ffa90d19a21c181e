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


def test_unet_width_scales_the_planned_features_of_the_trained_configuration_only():
    """`--unet-width`: the configuration being trained gets its own scaled network (an inherited one
    included); the planner's other configurations keep nnU-Net's plan."""
    from segkit.engines.nnunet._worker import scale_features

    def plans():
        arch = {"network_class_name": "PlainConvUNet", "arch_kwargs": {"features_per_stage": [32, 64, 128, 256, 320]}}
        return {"configurations": {"3d_fullres": {"architecture": arch},
                                   "3d_lowres": {"inherits_from": "3d_fullres", "spacing": [2, 2, 2]}}}

    scaled = plans()
    scale_features(scaled, "3d_fullres", 0.25)
    assert scaled["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"] == [8, 16, 32, 64, 80]
    inherited = plans()
    scale_features(inherited, "3d_lowres", 0.1)
    assert inherited["configurations"]["3d_lowres"]["architecture"]["arch_kwargs"]["features_per_stage"] == [4, 6, 13, 26, 32]
    assert inherited["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"] == [32, 64, 128, 256, 320]
    unchanged = plans()
    scale_features(unchanged, "3d_fullres", 1.0)
    assert unchanged == plans()
