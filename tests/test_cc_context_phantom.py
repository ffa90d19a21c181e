"""Issue 18 item 2: the CC phantom that needs context (segkit.phantoms.cc_context). The label follows
the anatomy (callosal voxels within a fixed distance of the subject's own mid-sagittal plane), while
left-right fibres with the CC's anisotropy run far beyond it and in an unlabelled anterior
commissure; subjects differ in size, position, tilt and SNR."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.phantoms.cc_anatomy import CC_EVALS, ras_affine
from segkit.phantoms.cc_context import (
    LABEL_HALF_WIDTH_MM,
    context_tissue_model,
    draw_context_anatomy,
    subject_grid,
)
from segkit.phantoms.cc_dwi import make_cc_phantom
from segkit.tasks.cc_fodf.voxel_rule import dice

SHAPE, VOXEL = (40, 46, 34), 3.0


def subject(seed: int):
    rng = np.random.default_rng(seed)
    anatomy = draw_context_anatomy(rng, SHAPE, VOXEL)
    grid = subject_grid(SHAPE, ras_affine(SHAPE, VOXEL), anatomy)
    return anatomy, grid, context_tissue_model(grid, anatomy, rng, VOXEL)


@pytest.fixture(scope="module", params=[0, 1, 2])
def drawn(request):
    return subject(request.param)


def test_the_label_is_the_callosum_within_a_fixed_lateral_extent_of_the_midline(drawn):
    anatomy, (x, y, z), tissue = drawn
    label, fibres = tissue["cc"] > 0, tissue["callosal_fibres"]
    assert label.sum() > 150 and not (label & ~fibres).any()
    assert np.abs(x[label]).max() <= LABEL_HALF_WIDTH_MM
    assert (fibres & ~label).sum() > label.sum()  # the fibres run on, unlabelled, beyond the extent
    assert np.abs(x[fibres]).max() > 2 * LABEL_HALF_WIDTH_MM
    assert (tissue["axial"][fibres & ~label] == CC_EVALS[0]).all()  # with the CC's own anisotropy
    assert (tissue["radial"][fibres & ~label] == CC_EVALS[1]).all()


def test_an_unlabelled_left_right_commissure_lies_below_and_in_front(drawn):
    anatomy, (x, y, z), tissue = drawn
    commissure, label = tissue["commissure"], tissue["cc"] > 0
    assert commissure.sum() > 20 and not (commissure & label).any()
    assert (tissue["axial"][commissure] == CC_EVALS[0]).all()
    left_right = anatomy.rotation[:, 0]  # the subject's left-right axis in world coordinates
    assert np.median(np.abs(tissue["primary"][commissure] @ left_right)) > 0.85  # bowing back laterally
    assert np.median(z[commissure]) < z[label].min() and np.median(y[commissure]) > np.median(y[label])


def test_anisotropy_and_direction_alone_do_not_give_the_label(drawn):
    """The best a per-voxel rule on the true fibres can do: every voxel whose fibre has the CC's
    anisotropy and runs within 25 degrees of world left-right (no noise, no CSD)."""
    _, _, tissue = drawn
    left_right = np.abs(tissue["primary"][..., 0]) > np.cos(np.deg2rad(25))
    rule = left_right & (tissue["axial"] == CC_EVALS[0]) & (tissue["second_fraction"] == 0)
    assert dice(rule, tissue["cc"] > 0) < 0.7


def test_subjects_differ_in_size_position_tilt_and_label():
    drawn = [subject(seed) for seed in range(4)]
    radii = np.array([a.base.brain_radii for a, _, _ in drawn])
    centres = np.array([a.base.centre for a, _, _ in drawn])
    tilts = [np.degrees(np.arccos(np.clip((np.trace(a.rotation) - 1) / 2, -1, 1))) for a, _, _ in drawn]
    assert np.ptp(radii, axis=0).min() > 0.5 and np.ptp(centres, axis=0).min() > 0.5
    assert max(tilts) > 4 and len({round(t, 3) for t in tilts}) == 4
    labels = [t["cc"] > 0 for _, _, t in drawn]
    assert max(dice(labels[0], other) for other in labels[1:]) < 0.9


def test_dwi_subject_with_context_stores_the_label_and_varies_snr():
    a = make_cc_phantom(7, shape=(24, 28, 20), voxel_size=5.0, context=True)
    b = make_cc_phantom(7, shape=(24, 28, 20), voxel_size=5.0, context=True, snr=80)
    assert a.dwi.shape == (24, 28, 20, 35) and a.cc_mask.any() and not (a.cc_mask & ~a.brain_mask.astype(bool)).any()
    np.testing.assert_array_equal(a.cc_mask, b.cc_mask)
    background = b.brain_mask == 0
    assert a.dwi[background].std() > 1.5 * b.dwi[background].std()  # drawn SNR (15-40) is below 80
