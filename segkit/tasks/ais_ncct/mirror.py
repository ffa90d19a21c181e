"""Flip registration: the CT mirrored left-right, registered back onto itself (AISCT-SAM's channel 1).

The mirror is taken about the array's central sagittal plane (the first axis, R-L, in RAS order),
then registered onto the original with SimpleITK: rigid (Euler 3D) first, then deformable
(symmetric-forces demons, a smooth displacement field). Upstream uses ANTs SyN; segkit uses SimpleITK. Both work in the brain's HU range so
bone and air do not dominate the metric.

The rigid part says where the head's mid-sagittal plane is: with S the array mirror and T the rigid
map, S o T is the reflection about that plane (`mid_sagittal_plane`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segkit.tasks.ais_ncct.ct import hu_between

WINDOW_HU = (-10.0, 90.0)  # the brain's range; the metric sees nothing else
DEMONS_ITERATIONS = 20
DEMONS_SIGMA = 2.0


@dataclass
class FlipRegistration:
    mirror: np.ndarray  # float32: the registered mirror on the input's grid (channel 1)
    transform: object  # SimpleITK CompositeTransform (rigid then B-spline), fixed -> mirrored point
    rigid: object  # its rigid part (Euler3DTransform)
    info: dict = field(default_factory=dict)  # residuals and the plane


def mirror_left_right(volume: np.ndarray) -> np.ndarray:
    """The volume flipped along its first (R-L) axis: its mirror about the array's central sagittal plane."""
    return np.ascontiguousarray(np.asarray(volume)[::-1])


def _sitk_image(array: np.ndarray, spacing, factors=(1, 1, 1)):
    """The brain-windowed float32 image SimpleITK registers, in its (z, y, x) order, each block of
    `factors` voxels averaged (a slab of slices at a time, so no full-size float copy is made). Block
    centres keep their physical place: the origin moves by (factor - 1) / 2 voxels along each axis."""
    import SimpleITK as sitk

    fx, fy, fz = factors
    nx, ny, nz = (n // f * f for n, f in zip(array.shape, factors))
    windowed = np.empty((nz // fz, ny // fy, nx // fx), dtype=np.float32)
    slab = fz * max(1, RESAMPLE_SLAB // fz)
    for start in range(0, nz, slab):
        stop = min(nz, start + slab)
        part = np.clip(np.asarray(array[:nx, :ny, start:stop], dtype=np.float32), *WINDOW_HU)
        blocks = part.reshape(nx // fx, fx, ny // fy, fy, (stop - start) // fz, fz).mean(axis=(1, 3, 5), dtype=np.float32)
        windowed[start // fz:stop // fz] = np.transpose(blocks, (2, 1, 0))  # sitk wants z, y, x
    image = sitk.GetImageFromArray(windowed)
    del windowed
    image.SetSpacing([float(s) * f for s, f in zip(spacing, factors)])
    image.SetOrigin([(f - 1) / 2.0 * float(s) for s, f in zip(spacing, factors)])
    return image


# Registration runs on images of about REGISTRATION_SIDE voxels in-plane: blocks of voxels are
# averaged (in-plane by powers of 2; across slices only as far as the slices stay thinner than the
# in-plane blocks). Its levels are coarser still (rigid: about 32 and 64 voxels; demons: this size).
# It once ran on the whole image with SimpleITK's own shrink factors, which apply to every axis
# alike (a thick-slice CT kept a few slices), and a 512x512x800 CT cost about 16 bytes a voxel
# (11.6 GiB with the moving image's gradient filter).
REGISTRATION_SIDE = 128


def registration_factors(shape, spacing, side: int) -> tuple[int, int, int]:
    """Block sizes (x, y, z) that bring the larger in-plane side to `side` voxels or more."""
    factor = 1
    while max(shape[:2]) // (2 * factor) >= side:
        factor *= 2
    block_mm = factor * float(min(spacing[:2]))
    across = max(1, min(int(block_mm // float(spacing[2])), int(shape[2]) // 8))  # keep 8 slices or more
    return factor, factor, across


def _registration_pair(volume, mirror, spacing):
    """(fixed, moving) SimpleITK images of the volume and its mirror, blocks averaged."""
    factors = registration_factors(volume.shape, spacing, REGISTRATION_SIDE)
    return _sitk_image(volume, spacing, factors), _sitk_image(mirror, spacing, factors)


def _coarsest_shrink(image, side: int = 64) -> int:
    """The shrink factor that brings the in-plane size to about `side` voxels."""
    return max(1, int(round(max(image.GetSize()[:2]) / side)))


def register_rigid(fixed, moving, iterations: int = 60):
    """Euler 3D (rotation + translation) by mean squares, coarse to fine, sampled with a fixed seed."""
    import SimpleITK as sitk

    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.3, seed=7)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=iterations,
                                                    relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    coarse = _coarsest_shrink(fixed)
    method.SetShrinkFactorsPerLevel([2 * coarse, coarse])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SetInitialTransform(initial, inPlace=False)
    return _as_euler(method.Execute(fixed, moving))


def register_deformable(fixed, moving, rigid, iterations: int = DEMONS_ITERATIONS):
    """Symmetric-forces demons on the rigidly aligned mirror, on a grid of about 128 voxels in-plane.

    A smooth field (sigma DEMONS_SIGMA voxels) corrects shape asymmetry without erasing a lesion's
    few-HU contrast. Returns rigid then displacement field as one CompositeTransform."""
    import SimpleITK as sitk

    shrink = [_coarsest_shrink(fixed, 128)] * 2 + [1]
    small = sitk.Shrink(fixed, shrink)
    aligned = sitk.Resample(moving, small, rigid, sitk.sitkLinear, WINDOW_HU[0])
    demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    demons.SetNumberOfIterations(iterations)
    demons.SetStandardDeviations(DEMONS_SIGMA)
    field = demons.Execute(small, aligned)
    composite = sitk.CompositeTransform(rigid)
    composite.AddTransform(sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64)))
    return composite  # applied last-added first: fixed point -> field -> rigid -> mirrored image


RESAMPLE_SLAB = 32  # z-slices resampled at a time: 512x512x32 float32 is 32 MB


def _moving_image(mirror: np.ndarray, spacing):
    """The mirror as SimpleITK's moving image, in its own pixel type: an int16 mirror goes in as int16
    (linear interpolation computes in double from the pixel values either way, so the output is the
    float32 input's, from half the memory)."""
    import SimpleITK as sitk

    pixels = mirror if mirror.dtype == np.int16 else mirror.astype(np.float32, copy=False)
    moving = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(pixels, (2, 1, 0))))
    moving.SetSpacing([float(s) for s in spacing])
    return moving


def _resample_slab(moving, transform, background: float, start: int, stop: int) -> np.ndarray:
    """float32 (X, Y, stop - start): z-slices start .. stop of sitk.Resample(moving, moving, transform).

    Resampling is pointwise, so a reference grid that is the moving grid's slices start .. stop (the
    same spacing and direction, the origin moved to slice `start`) gives those slices' values."""
    import SimpleITK as sitk

    size = list(moving.GetSize())
    origin = moving.TransformIndexToPhysicalPoint((0, 0, start))
    out = sitk.Resample(moving, [size[0], size[1], stop - start], transform, sitk.sitkLinear, origin,
                        moving.GetSpacing(), moving.GetDirection(), float(background), sitk.sitkFloat32)
    # a copy of the slab: a view would point into `out`'s buffer, which is freed when `out` goes
    return np.transpose(sitk.GetArrayFromImage(out), (2, 1, 0))


def resample_mirror(mirror: np.ndarray, spacing, transform, background: float, slab: int = RESAMPLE_SLAB,
                    moving=None) -> np.ndarray:
    """float32 (X, Y, Z): the mirror through `transform` on its own grid, `slab` z-slices at a time into
    one preallocated array, so no full-size SimpleITK output or transposed copy exists beside it."""
    moving = _moving_image(mirror, spacing) if moving is None else moving
    out = np.empty(mirror.shape, dtype=np.float32)
    for start in range(0, mirror.shape[2], slab):
        stop = min(start + slab, mirror.shape[2])
        out[:, :, start:stop] = _resample_slab(moving, transform, background, start, stop)
    return out


class _Residual:
    """RMS of the windowed difference over a region, summed a slab at a time (float32 differences, their
    squares summed in float64), so neither side need be a whole volume."""

    def __init__(self):
        self.total, self.count = 0.0, 0

    def add(self, a: np.ndarray, b: np.ndarray, region: np.ndarray) -> None:
        a = np.clip(a[region].astype(np.float32, copy=False), *WINDOW_HU)
        b = np.clip(b[region].astype(np.float32, copy=False), *WINDOW_HU)
        self.total += float(np.sum(np.square(a - b), dtype=np.float64))
        self.count += a.size

    def rms(self) -> float:
        return float(np.sqrt(self.total / self.count)) if self.count else float("nan")


def _residuals(volume, registered, moving, rigid, region, background: float, slab: int = RESAMPLE_SLAB) -> dict:
    """The residuals before registration, after the rigid part only and after the whole transform. The
    rigid-only mirror exists only for its residual, so it is resampled a slab at a time and dropped."""
    before, rigid_only, after = _Residual(), _Residual(), _Residual()
    for start in range(0, volume.shape[2], slab):
        stop = min(start + slab, volume.shape[2])
        part, where = volume[:, :, start:stop], region[:, :, start:stop]
        before.add(part, volume[::-1, :, start:stop], where)
        rigid_only.add(part, _resample_slab(moving, rigid, background, start, stop), where)
        after.add(part, registered[:, :, start:stop], where)
    return {"residual_hu_before": before.rms(), "residual_hu_rigid": rigid_only.rms(), "residual_hu": after.rms()}


def flip_register(volume: np.ndarray, spacing, *, brain: np.ndarray | None = None, deformable: bool = True,
                  background: float = 0.0) -> FlipRegistration:
    """The registered mirror of `volume` (a CT in HU on an axis-aligned grid with `spacing`, RAS order).

    Registration runs on float32 block averages of `volume` and of its mirror (a view: never copied as
    an array); the transform found resamples the full-size mirror a slab at a time."""
    import SimpleITK as sitk

    mirror = volume[::-1]  # a view: mirror_left_right's values without its copy
    fixed, moving = _registration_pair(volume, mirror, spacing)
    rigid = register_rigid(fixed, moving)
    transform = register_deformable(fixed, moving, rigid) if deformable else sitk.CompositeTransform(rigid)
    del fixed, moving
    moving = _moving_image(mirror, spacing)
    registered = resample_mirror(mirror, spacing, transform, background, moving=moving)
    region = brain if brain is not None else hu_between(volume, *WINDOW_HU, RESAMPLE_SLAB)  # no brain mask: the window
    normal, point = mid_sagittal_plane(rigid, volume.shape, spacing)
    info = {
        "method": "SimpleITK rigid (Euler3D) + demons" if deformable else "SimpleITK rigid (Euler3D)",
        **_residuals(volume, registered, moving, rigid, region, background),
        "plane_normal": normal.tolist(), "plane_point_mm": point.tolist(),
        "plane_tilt_deg": float(np.degrees(np.arccos(min(1.0, abs(normal[0]))))),
    }
    return FlipRegistration(registered, transform, rigid, info)


def _as_euler(transform):
    """The Euler3DTransform inside what ImageRegistrationMethod returns (a composite in SimpleITK 2.x)."""
    import SimpleITK as sitk

    if transform.GetName() == "CompositeTransform":
        transform = sitk.CompositeTransform(transform).GetNthTransform(0)
    return sitk.Euler3DTransform(transform)


def mid_sagittal_plane(rigid, shape, spacing) -> tuple[np.ndarray, np.ndarray]:
    """(unit normal, point) of the head's symmetry plane in the array's physical frame (origin at voxel 0).

    S o T is the reflection about that plane: its linear part's eigenvector of eigenvalue -1 is the
    normal, and the midpoint of any point and its image lies on the plane.
    """
    matrix = np.asarray(rigid.GetMatrix(), dtype=float).reshape(3, 3)
    centre = np.asarray(rigid.GetCenter(), dtype=float)
    translation = np.asarray(rigid.GetTranslation(), dtype=float)
    width = (shape[0] - 1) * float(spacing[0])

    def reflect(point: np.ndarray) -> np.ndarray:  # S o T
        moved = matrix @ (point - centre) + centre + translation
        return np.array([width - moved[0], moved[1], moved[2]])

    linear = np.diag([-1.0, 1.0, 1.0]) @ matrix
    values, vectors = np.linalg.eig(linear)
    normal = np.real(vectors[:, int(np.argmin(np.real(values)))])
    normal = normal / np.linalg.norm(normal) * (1.0 if normal[0] >= 0 else -1.0)
    middle = (np.asarray(shape) - 1) / 2.0 * np.asarray(spacing, dtype=float)
    return normal, (middle + reflect(middle)) / 2.0
