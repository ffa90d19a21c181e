"""lpm_nnsam2 few-shot on targets placed like other patients (issue 13): alignment, the failure
signal, modality.

The varied set: one support (seed 0, 12 slices, annotated slice 6) and targets shifted by up to
15 mm, rotated by up to 10 degrees in-plane, scaled 0.8-1.2, with other slice counts, pixel sizes
and fields of view. Beside every score stands the copy-the-support-slice baseline (the annotated
slice copied onto every target slice by world coordinates, no model), which the method must beat,
and the registered copy (the same after alignment), printed to show what the model adds.
"""

from __future__ import annotations

import numpy as np
import pytest

from lpm_baseline import copied_annotation
from segkit.io.image import Image
from segkit.phantoms.lumbar import Pose, make_lumbar_phantom, single_slice_support
from segkit.tasks.lpm_nnsam2.align import Alignment, Volume, align_support
from segkit.tasks.lpm_nnsam2.slices import detect_modality, label_frames_from_ras, ras_volume

SEED_SLICE = 6
SIDES = {1: "lpm_right", 2: "lpm_left"}
# (seed, pose, field of view mm, pixel mm, slices): the ranges' corners, and a middle case
TARGETS = (
    (101, Pose((15.0, -12.0), 10.0, 1.2), 190.0, 1.3, 7),
    (102, Pose((-14.0, 15.0), -10.0, 0.8), 150.0, 0.9, 5),
    (103, Pose((-8.0, -15.0), 6.0, 1.05), 170.0, 1.1, 6),
)
FEWSHOT_FLOOR = 0.85  # per side and target (the bar; lowest measured 0.867: benchmarks/README.md)
MEAN_FLOOR = 0.85  # per side, over the targets


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def support_phantom():
    phantom = make_lumbar_phantom(0, shape=(112, 96, 12), spacing=(1.0, 1.0, 4.0))
    return phantom, single_slice_support(phantom.labels, SEED_SLICE)


def target_phantom(seed, pose, fov, pixel, n_slices):
    shape = (int(fov / pixel), int(0.85 * fov / pixel), n_slices)
    return make_lumbar_phantom(seed, shape=shape, spacing=(pixel, pixel, 48.0 / n_slices), pose=pose)


def copied_dice(support_volume: Volume, target, register: bool) -> dict[int, float]:
    """Dice per side of the support's annotated slice copied onto every target slice."""
    volume = copied_annotation(support_volume, [SEED_SLICE], target.ct, target.affine, register)
    return {v: dice(volume == v, target.labels == v) for v in SIDES}


def test_alignment_places_the_annotation_where_the_target_muscles_are():
    support, mask = support_phantom()
    volume = Volume(support.ct, support.affine, "ct", mask)
    for spec in TARGETS:
        target = target_phantom(*spec)
        unregistered, registered = copied_dice(volume, target, False), copied_dice(volume, target, True)
        print(f"target {spec[0]}: copied {unregistered}, copied after alignment {registered}")
        for value in SIDES:
            assert registered[value] >= 0.6 and registered[value] >= unregistered[value] + 0.3


def test_a_ct_cropped_to_the_body_is_still_ct_and_dixon_is_mri():
    phantom = make_lumbar_phantom(3)
    body = np.argwhere(phantom.ct > -500.0)
    (x0, y0, _), (x1, y1, _) = body.min(axis=0) + 12, body.max(axis=0) - 12
    inside = phantom.ct[x0:x1, y0:y1, :]  # cropped to the body, through the subcutaneous fat: no air left
    masked = np.where(phantom.ct < -500.0, 0.0, phantom.ct)  # air set to 0 outside a body mask
    for cropped in (inside, masked):
        assert float(np.percentile(cropped, 1.0)) > -500.0
        assert detect_modality(cropped) == "ct"
    assert detect_modality(phantom.ct) == "ct"
    assert detect_modality(phantom.fat) == "mri" and detect_modality(phantom.water) == "mri"


def test_the_failure_signal_flags_masks_in_the_wrong_place_and_not_the_right_ones():
    from segkit.tasks.lpm_nnsam2.signal import check_slices

    support, _ = support_phantom()
    truth = label_frames_from_ras(support.labels)
    scores = np.full((truth.shape[0], 2), 0.92)  # a confident IoU head either way
    fine = check_slices(truth, scores, truth, (0.44, 0.38), (1, 2))
    assert not fine.failed.any()
    moved = truth.copy()
    moved[6:] = np.roll(truth[6:], 40, axis=1)  # from slice 6 on, 40 frame rows: about 17 mm to the right
    wrong = check_slices(moved, scores, truth, (0.44, 0.38), (1, 2))
    assert wrong.failed[6:].all() and not wrong.failed[:6].any()


class RightSideOnly:
    """A propagator double that finds the right side where the aligned annotation puts it and
    never the left, with a confident IoU head: what a failed side looks like to segkit."""

    name = "double"

    def propagate(self, target_frames, alignment, object_ids=(1, 2), progress=None):
        from segkit.tasks.lpm_nnsam2.propagation import Propagation

        labels = np.where(alignment.reference == 1, 1, 0).astype(np.uint8)
        return Propagation(labels, np.full((target_frames.shape[0], 2), 0.9, np.float32), [], self.name)


def test_a_side_that_fails_everywhere_is_a_warning_not_a_mask():
    from segkit.tasks.lpm_nnsam2.fewshot import prepare_support, pseudo_label

    phantom, mask = support_phantom()
    support = prepare_support(Image(phantom.ct, phantom.affine, "s.nii.gz"), Image(mask, phantom.affine, "m.nii.gz"), [SEED_SLICE])
    target = target_phantom(*TARGETS[1])
    result = pseudo_label(Image(target.ct, target.affine, "t.nii.gz"), support, RightSideOnly())
    assert "lpm_left failed on every slice" in result.info["warning"] and "lpm_right" not in result.info["warning"]
    assert result.info["failed_slices_ras"] == {"lpm_right": [], "lpm_left": list(range(TARGETS[1][4]))}
    assert (result.labels == 1).any() and not (result.labels == 2).any()
    rows = result.table_rows()
    assert all(r["failed_lpm_left"] == 1 and r["failed_lpm_right"] == 0 and r["agree_lpm_right"] > 0.9 for r in rows)


@pytest.fixture(scope="module")
def litemedsam():
    from segkit.models.sam import checkpoint_path
    from segkit.tasks.lpm_nnsam2.litemedsam_propagator import LiteMedsamPropagator

    return LiteMedsamPropagator(checkpoint_path("litemedsam"), device="cpu", backend="onnx")


@pytest.fixture(scope="module")
def support():
    from segkit.tasks.lpm_nnsam2.fewshot import prepare_support

    phantom, mask = support_phantom()
    return prepare_support(Image(phantom.ct, phantom.affine, "sup.nii.gz"), Image(mask, phantom.affine, "mask.nii.gz"), [SEED_SLICE])


def fewshot_beats_the_copied_support_slice(litemedsam, support, targets) -> None:
    from segkit.tasks.lpm_nnsam2.fewshot import pseudo_label

    scores, baseline = {v: [] for v in SIDES}, {v: [] for v in SIDES}
    for spec in targets:
        target = target_phantom(*spec)
        result = pseudo_label(Image(target.ct, target.affine, f"t{spec[0]}.nii.gz"), support, litemedsam)
        copied, registered = copied_dice(support.volume, target, False), copied_dice(support.volume, target, True)
        for value, name in SIDES.items():
            score = dice(result.labels == value, target.labels == value)
            print(f"target {spec[0]} {name}: few-shot {score:.3f}, copied slice {copied[value]:.3f}, "
                  f"copied after alignment {registered[value]:.3f}")
            scores[value].append(score)
            baseline[value].append(copied[value])
            assert score >= FEWSHOT_FLOOR
        assert not result.checks.failed.any(), result.info["failed_slices_ras"]  # a normal run: nothing flagged
    for value in SIDES:
        assert np.mean(scores[value]) >= MEAN_FLOOR
        assert np.mean(scores[value]) >= np.mean(baseline[value]) + 0.05


@pytest.mark.slow
def test_fewshot_on_varied_targets_beats_the_copied_support_slice_and_flags_nothing(litemedsam, support):
    """CI: the two corners of the ranges (about 2 CPU minutes); all of TARGETS behind -m fullsize."""
    fewshot_beats_the_copied_support_slice(litemedsam, support, TARGETS[:2])


@pytest.mark.fullsize
def test_fullsize_fewshot_on_every_varied_target(litemedsam, support):
    fewshot_beats_the_copied_support_slice(litemedsam, support, TARGETS)


@pytest.mark.slow
def test_a_displaced_prompt_is_flagged_on_every_slice_it_ruins(litemedsam, support):
    from segkit.tasks.lpm_nnsam2.fewshot import frame_pixel_mm
    from segkit.tasks.lpm_nnsam2.signal import check_slices
    from segkit.tasks.lpm_nnsam2.slices import frames_from_ras

    target = target_phantom(*TARGETS[1])
    ras, grid = ras_volume(Image(target.ct, target.affine, "t.nii.gz"))
    aligned = align_support(support.volume, [SEED_SLICE], Volume(ras, grid.reorient.canonical_affine, "ct"))
    displaced = Alignment(aligned.starts, np.roll(aligned.reference, 45, axis=1), aligned.support_frames)  # ~30 mm
    propagation = litemedsam.propagate(frames_from_ras(ras, "ct"), displaced, object_ids=(1, 2))
    checks = check_slices(propagation.labels, propagation.scores, aligned.reference, frame_pixel_mm(grid), (1, 2))
    truth = label_frames_from_ras(target.labels)
    ruined = 0
    for k in range(truth.shape[0]):
        for j, value in enumerate(SIDES):
            score = dice(propagation.labels[k] == value, truth[k] == value)
            print(f"slice {k} side {value}: Dice {score:.3f}, iou {checks.iou[k, j]:.2f}, agree {checks.agree[k, j]:.2f}, "
                  f"failed {bool(checks.failed[k, j])}")
            if score < 0.5:
                ruined += 1
                assert checks.failed[k, j]
    assert ruined > 0  # the displacement did ruin slices, so the assertion above was exercised
