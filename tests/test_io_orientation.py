"""Orientation changes: exact round trips for all 48 axis-code orientations."""

import itertools

import nibabel as nib
import numpy as np
import pytest

from segkit.io.orientation import parse_axcodes, reorientation_to

SHAPE = (5, 6, 7)
SPACING = (0.7, 1.3, 2.9)
ORIGIN = (-12.5, 30.25, 7.0)
MARKER = (1, 4, 2)
AXIS_LETTERS = ("LR", "PA", "IS")  # (negative, positive) direction of each world axis
ORIENTATIONS = [
    (perm, signs) for perm in itertools.permutations(range(3)) for signs in itertools.product((1, -1), repeat=3)
]


def codes_of(perm, signs):
    return "".join(AXIS_LETTERS[perm[i]][signs[i] > 0] for i in range(3))


def affine_for(perm, signs, spacing=SPACING, origin=ORIGIN):
    """Array axis i steps spacing[i] mm along world axis perm[i], in direction signs[i]."""
    affine = np.zeros((4, 4))
    for axis in range(3):
        affine[perm[axis], axis] = signs[axis] * spacing[axis]
    affine[:3, 3] = origin
    affine[3, 3] = 1
    return affine


def world(affine, ijk):
    return affine[:3, :3] @ np.asarray(ijk, dtype=float) + affine[:3, 3]


def volume_with_marker(shape=SHAPE, seed=0):
    volume = np.random.default_rng(seed).random(shape)
    volume[MARKER] = 10.0  # the only value above 1
    return volume


def assert_same_world_content(source, source_affine, canonical, canonical_affine):
    """Every canonical voxel holds the value of the source voxel at the same world point."""
    canonical_ijk = np.indices(canonical.shape[:3]).reshape(3, -1)
    world_points = canonical_affine[:3, :3] @ canonical_ijk + canonical_affine[:3, 3:4]
    source_ijk = np.linalg.inv(source_affine[:3, :3]) @ (world_points - source_affine[:3, 3:4])
    source_ijk = np.rint(source_ijk).astype(int)
    np.testing.assert_array_equal(canonical.reshape(-1), source[tuple(source_ijk)])


def test_the_48_test_orientations_are_distinct_and_labelled_as_nibabel_does():
    codes = {codes_of(perm, signs) for perm, signs in ORIENTATIONS}
    assert len(codes) == 48
    for perm, signs in ORIENTATIONS:
        assert "".join(nib.aff2axcodes(affine_for(perm, signs))) == codes_of(perm, signs)


@pytest.mark.parametrize("target", ["RAS", "LAS"])
@pytest.mark.parametrize("perm,signs", ORIENTATIONS, ids=[codes_of(p, s) for p, s in ORIENTATIONS])
def test_round_trip_to_canonical_and_back(perm, signs, target):
    affine = affine_for(perm, signs)
    volume = volume_with_marker()
    reorientation = reorientation_to(affine, SHAPE, target)

    canonical = reorientation.to_canonical(volume)

    assert canonical.shape == reorientation.canonical_shape
    assert canonical.flags.c_contiguous  # ready for torch.from_numpy
    assert "".join(nib.aff2axcodes(reorientation.canonical_affine)) == target
    np.testing.assert_array_equal(reorientation.from_canonical(canonical), volume)
    found = np.unravel_index(np.argmax(canonical), canonical.shape)
    np.testing.assert_allclose(world(reorientation.canonical_affine, found), world(affine, MARKER), atol=1e-9)
    assert_same_world_content(volume, affine, canonical, reorientation.canonical_affine)
    # voxel-index mapping agrees with the array mapping, both ways
    np.testing.assert_array_equal(reorientation.index_to_canonical(MARKER), found)
    np.testing.assert_array_equal(reorientation.index_from_canonical(found), MARKER)


@pytest.mark.parametrize("perm,signs", ORIENTATIONS[::7], ids=[codes_of(p, s) for p, s in ORIENTATIONS[::7]])
def test_trailing_axes_are_carried_along(perm, signs):
    affine = affine_for(perm, signs)
    volumes = np.stack([volume_with_marker(seed=s) for s in range(3)], axis=-1)
    reorientation = reorientation_to(affine, volumes.shape, "LAS")

    canonical = reorientation.to_canonical(volumes)

    assert canonical.shape == reorientation.canonical_shape
    assert canonical.shape[-1] == 3
    for channel in range(3):
        np.testing.assert_array_equal(canonical[..., channel], reorientation.to_canonical(volumes[..., channel]))
    np.testing.assert_array_equal(reorientation.from_canonical(canonical), volumes)


def test_native_is_the_identity():
    affine = affine_for((2, 0, 1), (-1, 1, -1))
    volume = volume_with_marker()
    reorientation = reorientation_to(affine, SHAPE, "native")

    assert reorientation.is_identity
    np.testing.assert_array_equal(reorientation.to_canonical(volume), volume)
    np.testing.assert_array_equal(reorientation.canonical_affine, affine)
    assert reorientation.canonical_shape == SHAPE


def test_native_2d_keeps_the_image_and_its_indices():
    affine = affine_for((1, 0, 2), (-1, 1, 1))
    image = np.random.default_rng(2).random(SHAPE[:2])
    reorientation = reorientation_to(affine, image.shape, "native")
    np.testing.assert_array_equal(reorientation.to_canonical(image), image)
    np.testing.assert_array_equal(reorientation.from_canonical(image), image)
    np.testing.assert_array_equal(reorientation.index_to_canonical((1, 4)), (1, 4))
    assert reorientation.canonical_shape == SHAPE[:2]


def test_already_canonical_input_is_left_alone():
    affine = affine_for((0, 1, 2), (1, 1, 1))
    reorientation = reorientation_to(affine, SHAPE, "ras")
    assert reorientation.is_identity
    np.testing.assert_array_equal(reorientation.canonical_affine, affine)


def test_oblique_affine_goes_to_the_nearest_canonical_axes():
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    affine = affine_for((1, 2, 0), (-1, 1, -1))
    affine[:3, :3] = rotation @ affine[:3, :3]
    volume = volume_with_marker()
    reorientation = reorientation_to(affine, SHAPE, "RAS")

    canonical = reorientation.to_canonical(volume)

    assert "".join(nib.aff2axcodes(reorientation.canonical_affine)) == "RAS"
    assert_same_world_content(volume, affine, canonical, reorientation.canonical_affine)
    np.testing.assert_array_equal(reorientation.from_canonical(canonical), volume)


@pytest.mark.parametrize("perm,signs", ORIENTATIONS[::5], ids=[codes_of(p, s) for p, s in ORIENTATIONS[::5]])
def test_2d_image_gets_a_singleton_third_axis(perm, signs):
    affine = affine_for(perm, signs)
    image = np.random.default_rng(1).random(SHAPE[:2])
    image[1, 4] = 10.0
    reorientation = reorientation_to(affine, image.shape, "RAS")

    canonical = reorientation.to_canonical(image)

    assert canonical.ndim == 3 and canonical.size == image.size
    assert canonical.shape == reorientation.canonical_shape
    np.testing.assert_array_equal(reorientation.from_canonical(canonical), image)
    found = np.unravel_index(np.argmax(canonical), canonical.shape)
    np.testing.assert_allclose(world(reorientation.canonical_affine, found), world(affine, (1, 4, 0)), atol=1e-9)
    np.testing.assert_array_equal(reorientation.index_from_canonical(found), (1, 4))


def test_wrong_array_shape_is_refused():
    reorientation = reorientation_to(affine_for((0, 2, 1), (1, -1, 1)), SHAPE, "RAS")
    with pytest.raises(ValueError):
        reorientation.to_canonical(np.zeros((7, 6, 5)))
    with pytest.raises(ValueError):
        reorientation.from_canonical(np.zeros(SHAPE))


@pytest.mark.parametrize("bad", ["RRS", "XYZ", "RA", "RASL", ""])
def test_invalid_axis_codes(bad):
    with pytest.raises(ValueError, match="axis codes"):
        parse_axcodes(bad)
    with pytest.raises(ValueError):
        reorientation_to(np.eye(4), SHAPE, bad)


def test_sct_rpi_is_nibabel_las():
    # SCT names axes by where they come from ("from" convention); nibabel by where they go.
    reorientation = reorientation_to(affine_for((0, 1, 2), (1, 1, 1)), SHAPE, "LAS")
    canonical = reorientation.to_canonical(volume_with_marker())
    np.testing.assert_array_equal(canonical, volume_with_marker()[::-1])
