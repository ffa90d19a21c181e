"""The flip registration's slab-wise resampling and residuals against SimpleITK's whole-volume Resample,
and skull stripping's slab-wise steps against the whole-volume rule they replace (issue 17 item 4)."""

from __future__ import annotations

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from segkit.tasks.ais_ncct import ct, mirror  # noqa: E402


def _volume(shape, seed: int = 0) -> np.ndarray:
    """A smooth int16 'head' with texture, asymmetric in x so registration and resampling both matter."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    head = 40.0 * ((x - 0.1) ** 2 / 0.7 + y ** 2 / 0.5 + z ** 2 / 0.9 < 1) + 30.0 * np.sin(5 * x + 3 * y) * (z > -0.2)
    return np.round(head + rng.normal(0, 4, shape)).astype(np.int16)


def _composite_transform(shape, spacing):
    """Rigid (rotated about all axes, translated) then a random smooth displacement field."""
    rigid = sitk.Euler3DTransform((shape[0] * spacing[0] / 2, shape[1] * spacing[1] / 2, shape[2] * spacing[2] / 2),
                                  0.05, -0.03, 0.08, (1.3, -0.7, 0.9))
    rng = np.random.default_rng(1)
    field = rng.normal(0, 1.5, (shape[2] // 2, shape[1] // 2, shape[0] // 2, 3))
    image = sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(field, isVector=True), 1.5)
    image.SetSpacing([2 * s for s in spacing])
    composite = sitk.CompositeTransform(rigid)
    composite.AddTransform(sitk.DisplacementFieldTransform(sitk.Cast(image, sitk.sitkVectorFloat64)))
    return composite, rigid


def _whole_resample(volume, spacing, transform, background) -> np.ndarray:
    """The former rule: one sitk.Resample of the whole volume onto its own grid."""
    moving = sitk.GetImageFromArray(np.transpose(volume, (2, 1, 0)))
    moving.SetSpacing([float(s) for s in spacing])
    out = sitk.Resample(moving, moving, transform, sitk.sitkLinear, float(background), sitk.sitkFloat32)
    return np.transpose(sitk.GetArrayFromImage(out), (2, 1, 0))


@pytest.mark.parametrize("spacing", [(0.5, 0.75, 1.25), (0.43, 0.43, 0.45), (0.9, 1.1, 0.3)])
@pytest.mark.parametrize("slab", [1, 4, 7, 64])
def test_slab_resampling_equals_whole_volume_resample_bit_for_bit(spacing, slab):
    volume = _volume((24, 20, 19))
    composite, rigid = _composite_transform(volume.shape, spacing)
    for transform in (composite, rigid):
        expected = _whole_resample(volume[::-1], spacing, transform, -5.0)
        got = mirror.resample_mirror(volume[::-1], spacing, transform, -5.0, slab=slab)
        assert got.dtype == np.float32 and got.shape == volume.shape
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))  # bitwise, not within tolerance
    assert not np.array_equal(_whole_resample(volume, spacing, composite, 0.0), volume.astype(np.float32))


def test_slab_residuals_match_the_whole_volume_rms():
    volume, spacing = _volume((24, 20, 19), seed=3), (0.5, 0.75, 1.25)
    composite, rigid = _composite_transform(volume.shape, spacing)
    region = volume > 10
    registered = mirror.resample_mirror(volume[::-1], spacing, composite, 0.0)
    moving = mirror._moving_image(volume[::-1], spacing)
    got = mirror._residuals(volume, registered, moving, rigid, region, 0.0, slab=5)

    def whole_rms(other):  # the former _rms: float32 over the region's voxels at once
        a = np.clip(volume[region].astype(np.float32), *mirror.WINDOW_HU)
        b = np.clip(other[region].astype(np.float32), *mirror.WINDOW_HU)
        return float(np.sqrt(np.mean((a - b) ** 2)))

    rigid_only = _whole_resample(volume[::-1], spacing, rigid, 0.0)
    assert got["residual_hu_before"] == pytest.approx(whole_rms(volume[::-1]), rel=1e-6)
    assert got["residual_hu_rigid"] == pytest.approx(whole_rms(rigid_only), rel=1e-6)
    assert got["residual_hu"] == pytest.approx(whole_rms(registered), rel=1e-6)
    assert got["residual_hu_rigid"] != pytest.approx(got["residual_hu"], rel=1e-3)  # the two mirrors differ


def _whole_strip(hu, spacing):
    """The former strip_skull: whole-volume comparisons and np.bincount over all labels."""
    from scipy import ndimage

    tissue = (hu > ct.BRAIN_HU[0]) & (hu < ct.BRAIN_HU[1])
    ball = ct._ball(spacing, radius_mm=3.0)
    labels, _ = ndimage.label(ndimage.binary_opening(tissue, structure=ball))
    brain = labels == (1 + int(np.argmax(np.bincount(labels.ravel())[1:])))
    brain = ndimage.binary_dilation(brain, structure=ball) & tissue
    for z in range(brain.shape[2]):
        brain[:, :, z] = ndimage.binary_fill_holes(brain[:, :, z])
    return brain


@pytest.mark.parametrize("slab", [1, 3, 32])
def test_slab_skull_stripping_equals_the_whole_volume_rule(slab):
    from segkit.phantoms.head_ct import make_head_phantom

    phantom = make_head_phantom(4, shape=(40, 40, 12), field_of_view_mm=(200.0, 220.0, 60.0))
    hu = np.round(phantom.ct).astype(np.int16)
    # a second, smaller blob of brain-range tissue: the largest component must still win
    hu[2:6, 2:6, :] = 30
    spacing = phantom.truth["spacing_mm"]
    got = ct.strip_skull(hu, spacing, slab=slab)
    assert got.dtype == bool and got.any()
    assert np.array_equal(got, _whole_strip(hu, spacing))
    assert not got[2:6, 2:6, :].any()
