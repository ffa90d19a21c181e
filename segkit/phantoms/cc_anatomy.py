"""The CC phantom's anatomy: shapes drawn per seed and the tissue model of every voxel.

All in mm, brain-centred RAS coordinates:

- an ellipsoidal brain: grey-matter-like rim (low anisotropy), white-matter-like core whose fibre
  orientation varies smoothly at random, and a thin CSF layer outside it;
- the CC: a left-right bundle whose mid-sagittal section is an arch (half ellipse) of a given
  height and thickness, thicker at the splenium, rising laterally (fibres curve upward);
- two lateral 'ventricles' (isotropic CSF) under the arch;
- two cingulum-like bundles running anterior-posterior just above the CC;
- two corticospinal-like bundles running inferior-superior, crossing the CC's lateral parts
  (crossing voxels hold two fibre populations, 50/50).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Tissue properties: (axial, radial) diffusivities in mm^2/s, and b=0 signal.
CC_EVALS = (1.7e-3, 0.25e-3)
TRACT_EVALS = (1.6e-3, 0.3e-3)
WM_EVALS = (1.3e-3, 0.55e-3)
GM_EVALS = (0.95e-3, 0.75e-3)
CSF_DIFFUSIVITY = 3.0e-3
S0_WM, S0_GM, S0_CSF = 1000.0, 1300.0, 2200.0


@dataclass(frozen=True)
class Anatomy:
    """Shape parameters of one subject, in mm (see the module docstring)."""

    brain_radii: tuple[float, float, float]
    centre: tuple[float, float, float]  # brain centre in world mm
    cc_thickness: float
    cc_height: float  # arch height above its base
    cc_half_length: float  # anterior-posterior half extent of the arch
    cc_half_width: float  # left-right half extent of the bundle
    cc_base_z: float  # arch base height (relative to the brain centre)
    cc_centre_y: float
    cc_lateral_rise: float  # k in z += k x^2 (fibres curving up laterally)
    splenium_bulge: float  # thickness factor at the posterior end
    ventricle_offset: float
    ventricle_half_width: float
    cst_offset: float
    cst_y: float
    cst_radius: float
    cingulum_offset: float
    cingulum_radius: float


def draw_anatomy(rng, shape, voxel_size, thickness=None, height=None) -> Anatomy:
    fov = np.asarray(shape, dtype=float) * voxel_size
    a, b, c = fov[0] * rng.uniform(0.40, 0.45), fov[1] * rng.uniform(0.41, 0.46), fov[2] * rng.uniform(0.40, 0.45)
    thickness = float(rng.uniform(5.0, 8.0)) if thickness is None else float(thickness)
    thickness = max(thickness, 2.0 * voxel_size)  # at least two voxels, so the mask is never broken
    height = float(rng.uniform(12.0, 18.0)) if height is None else float(height)
    height = min(height, 0.5 * c)
    half_width = a * rng.uniform(0.55, 0.65)
    return Anatomy(
        brain_radii=(a, b, c),
        centre=tuple(float(v) for v in rng.uniform(-1.5, 1.5, 3) * voxel_size),
        cc_thickness=thickness,
        cc_height=height,
        cc_half_length=b * rng.uniform(0.45, 0.58),
        cc_half_width=half_width,
        cc_base_z=c * rng.uniform(-0.12, 0.02),
        cc_centre_y=b * rng.uniform(-0.06, 0.04),
        cc_lateral_rise=rng.uniform(0.3, 0.45) / (2 * half_width),  # slope 0.3-0.45 at the lateral ends
        splenium_bulge=rng.uniform(1.3, 1.8),
        ventricle_offset=rng.uniform(5.0, 7.0),
        ventricle_half_width=rng.uniform(3.5, 5.0),
        cst_offset=a * rng.uniform(0.38, 0.46),
        cst_y=b * rng.uniform(-0.2, -0.05),
        cst_radius=max(rng.uniform(3.5, 5.0), voxel_size),
        cingulum_offset=rng.uniform(5.0, 8.0),
        cingulum_radius=max(rng.uniform(2.5, 3.5), 0.6 * voxel_size),
    )


def ras_affine(shape, voxel_size) -> np.ndarray:
    """Voxel -> world mm for the RAS-built grid, centred on the field of view."""
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * voxel_size
    return affine


def world_grid(shape, affine, centre) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (mm) relative to the brain centre, broadcastable (X,1,1), (1,Y,1), (1,1,Z)."""
    axes = [affine[k, k] * np.arange(n, dtype=np.float32) + affine[k, 3] - centre[k] for k, n in enumerate(shape)]
    return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]


def _arch_curve(half_length, height, n=241) -> tuple[np.ndarray, np.ndarray]:
    """Points (y, z) of a half ellipse and its unit tangents, from anterior (theta 0) to posterior."""
    theta = np.linspace(0.0, np.pi, n)
    points = np.stack([half_length * np.cos(theta), height * np.sin(theta)], axis=1)
    tangents = np.stack([-half_length * np.sin(theta), height * np.cos(theta)], axis=1)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    return points, tangents


def _nearest_on_curve(y: np.ndarray, z: np.ndarray, curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each (y, z) to a sampled curve, and the index of the nearest sample."""
    points = np.stack([y.ravel(), z.ravel()], axis=1).astype(np.float64)
    distance = np.empty(len(points))
    nearest = np.empty(len(points), dtype=np.int64)
    for start in range(0, len(points), 8192):  # chunks keep the (points x samples) matrix small
        block = points[start : start + 8192]
        d2 = ((block[:, None, :] - curve[None, :, :]) ** 2).sum(axis=2)
        nearest[start : start + 8192] = d2.argmin(axis=1)
        distance[start : start + 8192] = np.sqrt(d2.min(axis=1))
    return distance.reshape(y.shape), nearest.reshape(y.shape)


def tissue_model(grid, anatomy: Anatomy, rng, voxel_size) -> dict:
    """Per-voxel compartments: two fibre populations (direction, evals, fraction), CSF, S0."""
    x, y, z = grid
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    a, b, c = anatomy.brain_radii
    radius = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    brain = radius <= 1.0
    outer_csf = (radius > 1.0) & (radius <= 1.0 + 1.5 * voxel_size / min(a, b, c))

    primary = _smooth_directions(rng, shape, sigma=3.0)
    axial = np.full(shape, WM_EVALS[0], np.float32)
    radial = np.full(shape, WM_EVALS[1], np.float32)
    grey = brain & (radius > 0.8)
    axial[grey], radial[grey] = GM_EVALS
    secondary = np.zeros(shape + (3,), np.float32)
    second_fraction = np.zeros(shape, np.float32)

    cst_tube, cst_dir = _cst(x, y, z, anatomy, shape)
    cingulum, cingulum_dir = _cingulum(x, y, z, anatomy, shape)
    cc, cc_dir = _corpus_callosum(x, y, z, anatomy, shape)
    cc &= brain
    ventricles = _ventricles(x, y, z, anatomy, shape) & ~cc
    cst = cst_tube & brain & ~cc
    cingulum &= brain & ~cc & ~cst
    crossing = cst_tube & cc

    for region, direction, evals in ((cingulum, cingulum_dir, TRACT_EVALS), (cst, cst_dir, TRACT_EVALS), (cc, cc_dir, CC_EVALS)):
        primary[region] = direction[region]
        axial[region], radial[region] = evals
    secondary[crossing] = cst_dir[crossing]
    second_fraction[crossing] = 0.5

    csf = (ventricles | outer_csf) & ~cc
    s0 = np.where(brain, S0_WM, 0.0).astype(np.float32)
    s0[grey] = S0_GM
    s0[csf] = S0_CSF
    return {
        "brain": (brain | outer_csf).astype(np.uint8),
        "cc": (cc & brain).astype(np.uint8),
        "csf": csf,
        "primary": primary,
        "axial": axial,
        "radial": radial,
        "secondary": secondary,
        "second_fraction": second_fraction,
        "s0": s0,
    }


def _corpus_callosum(x, y, z, anatomy: Anatomy, shape):
    """Arch in the mid-sagittal plane, rising laterally; fibres along the left-right tangent."""
    curve, _ = _arch_curve(anatomy.cc_half_length, anatomy.cc_height)
    xb, yb, zb = np.broadcast_arrays(x, y, z)
    lifted_z = zb - anatomy.cc_base_z - anatomy.cc_lateral_rise * xb**2
    near = (np.abs(xb) <= anatomy.cc_half_width) & (np.abs(lifted_z - anatomy.cc_height / 2) <= anatomy.cc_height)
    mask = np.zeros(shape, bool)
    if near.any():
        distance, nearest = _nearest_on_curve(yb[near] - anatomy.cc_centre_y, lifted_z[near], curve)
        theta = nearest / (len(curve) - 1) * np.pi  # 0 at the genu (anterior), pi at the splenium
        splenium = 1 + (anatomy.splenium_bulge - 1) * np.exp(-(((theta - np.pi) / 0.45) ** 2))
        genu = 1 + 0.25 * np.exp(-((theta / 0.45) ** 2))
        mask[near] = distance <= anatomy.cc_thickness / 2 * splenium * genu
    direction = np.zeros(shape + (3,), np.float32)
    direction[..., 0] = 1.0
    direction[..., 2] = 2 * anatomy.cc_lateral_rise * xb
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    return mask, direction


def _cingulum(x, y, z, anatomy: Anatomy, shape):
    """Two anterior-posterior tubes following an arch just above the CC."""
    gap = anatomy.cc_thickness / 2 + anatomy.cingulum_radius + 1.0
    curve, tangents = _arch_curve(anatomy.cc_half_length * 1.05, anatomy.cc_height + gap)
    xb, yb, zb = np.broadcast_arrays(x, y, z)
    lateral = np.abs(np.abs(xb) - anatomy.cingulum_offset)
    near = lateral <= anatomy.cingulum_radius
    mask = np.zeros(shape, bool)
    direction = np.zeros(shape + (3,), np.float32)
    if near.any():
        distance, nearest = _nearest_on_curve(yb[near] - anatomy.cc_centre_y, zb[near] - anatomy.cc_base_z, curve)
        mask[near] = np.hypot(distance, lateral[near]) <= anatomy.cingulum_radius
        direction[near, 1:] = tangents[nearest]
    return mask, direction


def _cst(x, y, z, anatomy: Anatomy, shape):
    """Two inferior-superior tubes lateral to the ventricles."""
    a, b, c = anatomy.brain_radii
    xb, yb, zb = np.broadcast_arrays(x, y, z)
    across = np.hypot(np.abs(xb) - anatomy.cst_offset, yb - anatomy.cst_y)
    mask = (across <= anatomy.cst_radius) & (zb > -0.9 * c) & (zb < 0.8 * c)
    direction = np.zeros(shape + (3,), np.float32)
    direction[..., 2] = 1.0
    return mask, direction


def _ventricles(x, y, z, anatomy: Anatomy, shape):
    """Two CSF ellipsoids whose tops reach the underside of the arch."""
    top = anatomy.cc_base_z + anatomy.cc_height - anatomy.cc_thickness / 2
    bottom = anatomy.cc_base_z - 0.2 * anatomy.cc_height
    centre_z, half_z = (top + bottom) / 2, (top - bottom) / 2
    half_y = 0.75 * anatomy.cc_half_length
    across = (np.abs(x) - anatomy.ventricle_offset) / anatomy.ventricle_half_width
    inside = across**2 + ((y - anatomy.cc_centre_y) / half_y) ** 2 + ((z - centre_z) / half_z) ** 2 <= 1.0
    return np.broadcast_to(inside, shape)


def _smooth_directions(rng, shape, sigma: float) -> np.ndarray:
    """A smoothly varying unit-vector field (left-right damped, as most deep white matter is not)."""
    from scipy.ndimage import gaussian_filter

    field = np.stack([gaussian_filter(rng.standard_normal(shape), sigma) for _ in range(3)], axis=-1)
    field[..., 0] *= 0.5
    field /= np.maximum(np.linalg.norm(field, axis=-1, keepdims=True), 1e-12)
    return field.astype(np.float32)
