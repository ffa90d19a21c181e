"""A CC phantom whose label needs context: the anisotropy alone does not say where the CC ends.

As in real brains (and unlike `cc_anatomy`'s, where the callosum is the only left-right bundle and
its label ends where its anisotropy ends):

- the callosal fibres continue laterally into each hemisphere, fanning out (thicker, rising), as
  left-right fibres with the CC's own anisotropy, far beyond the label;
- an anterior-commissure-like left-right bundle, with the same anisotropy and no label, lies below
  and in front of the genu, bowing backwards laterally;
- cingulum (anterior-posterior, above the CC) and corticospinal (inferior-superior, crossing the
  lateral callosal fibres) bundles run beside it, and lateral ventricles lie under the arch;
- the label follows the anatomy: the callosal voxels (mid-sagittal body, genu, splenium) within a
  fixed lateral extent (LABEL_HALF_WIDTH_MM) of the subject's own mid-sagittal plane.

Subjects vary in brain size and shape, CC shape, position, tilt (the whole head rotated up to 12
degrees), SNR and bias field. So a voxel rule (first peak left-right and strong) marks the lateral
fibres and the commissure too; a network has to find the midline and measure from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from segkit.phantoms.cc_anatomy import (
    CC_EVALS,
    GM_EVALS,
    S0_CSF,
    S0_GM,
    S0_WM,
    TRACT_EVALS,
    WM_EVALS,
    Anatomy,
    _arch_curve,
    _cingulum,
    _cst,
    _nearest_on_curve,
    _smooth_directions,
    _ventricles,
    draw_anatomy,
)

LABEL_HALF_WIDTH_MM = 15.0  # the label: callosal voxels within this distance of the mid-sagittal plane


@dataclass(frozen=True)
class ContextAnatomy:
    base: Anatomy  # brain, arch, ventricles, cingulum, CST (cc_half_width: how far the fibres run)
    rotation: np.ndarray  # 3x3, subject frame -> world (the head's tilt)
    fan: float  # relative thickening of the callosal fibres at their lateral ends
    ac_y: float  # anterior commissure: centre (subject frame, mm from the brain centre)
    ac_z: float
    ac_radius: float
    ac_half_width: float
    ac_bow: float  # k in y -= k x^2 (bowing backwards laterally)


def draw_context_anatomy(rng, shape, voxel_size) -> ContextAnatomy:
    base = draw_anatomy(rng, shape, voxel_size)
    a = base.brain_radii[0]
    base = replace(
        base,
        cc_half_width=a * rng.uniform(0.72, 0.82),
        centre=tuple(float(v) for v in rng.uniform(-2.0, 2.0, 3) * voxel_size),
    )
    base = replace(base, cc_lateral_rise=rng.uniform(0.3, 0.45) / (2 * base.cc_half_width))
    angles = np.deg2rad(rng.uniform(-1, 1, 3) * np.array([12.0, 8.0, 8.0]))  # pitch (x), roll (y), yaw (z)
    ac_half_width = a * rng.uniform(0.38, 0.48)
    return ContextAnatomy(
        base=base,
        rotation=_rotation(*angles),
        fan=float(rng.uniform(0.4, 0.8)),
        ac_y=base.cc_centre_y + base.cc_half_length * rng.uniform(0.25, 0.4),
        ac_z=base.cc_base_z - rng.uniform(8.0, 12.0),
        ac_radius=max(float(rng.uniform(2.2, 3.0)), 0.7 * voxel_size),
        ac_half_width=ac_half_width,
        ac_bow=rng.uniform(6.0, 10.0) / ac_half_width**2,
    )


def _rotation(pitch: float, roll: float, yaw: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll), np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def subject_grid(shape, affine, anatomy: ContextAnatomy):
    """Full (X, Y, Z) arrays of subject-frame coordinates (mm from the brain centre, untilted)."""
    axes = [affine[k, k] * np.arange(n, dtype=np.float32) + affine[k, 3] - anatomy.base.centre[k]
            for k, n in enumerate(shape)]
    world = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    local = world @ anatomy.rotation.astype(np.float32)  # rows: R^T p
    return local[..., 0], local[..., 1], local[..., 2]


def context_tissue_model(grid, anatomy: ContextAnatomy, rng, voxel_size) -> dict:
    """Per-voxel compartments (the keys of `cc_anatomy.tissue_model`), directions in world frame."""
    x, y, z = grid
    base = anatomy.base
    shape = x.shape
    a, b, c = base.brain_radii
    radius = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    brain = radius <= 1.0
    outer_csf = (radius > 1.0) & (radius <= 1.0 + 1.5 * voxel_size / min(a, b, c))
    grey = brain & (radius > 0.8)

    primary = _smooth_directions(rng, shape, sigma=3.0) @ anatomy.rotation.T.astype(np.float32)
    axial = np.where(grey, GM_EVALS[0], WM_EVALS[0]).astype(np.float32)
    radial = np.where(grey, GM_EVALS[1], WM_EVALS[1]).astype(np.float32)

    fibres, fibre_dir = _callosal_fibres(x, y, z, anatomy)
    fibres &= brain
    commissure, commissure_dir = _anterior_commissure(x, y, z, anatomy)
    commissure &= brain & ~fibres
    cst_tube, cst_dir = _cst(x, y, z, base, shape)
    cingulum, cingulum_dir = _cingulum(x, y, z, base, shape)
    cst = cst_tube & brain & ~fibres & ~commissure
    cingulum &= brain & ~fibres & ~cst & ~commissure
    ventricles = _ventricles(x, y, z, base, shape) & ~fibres & ~commissure
    crossing = cst_tube & fibres

    for region, direction, evals in ((cingulum, cingulum_dir, TRACT_EVALS), (cst, cst_dir, TRACT_EVALS),
                                     (commissure, commissure_dir, CC_EVALS), (fibres, fibre_dir, CC_EVALS)):
        primary[region] = direction[region] @ anatomy.rotation.T.astype(np.float32)
        axial[region], radial[region] = evals
    secondary = np.zeros(shape + (3,), np.float32)
    secondary[crossing] = cst_dir[crossing] @ anatomy.rotation.T.astype(np.float32)
    second_fraction = np.where(crossing, 0.5, 0.0).astype(np.float32)

    csf = (ventricles | outer_csf) & ~fibres
    s0 = np.where(brain, S0_WM, 0.0).astype(np.float32)
    s0[grey] = S0_GM
    s0[csf] = S0_CSF
    label = fibres & (np.abs(x) <= LABEL_HALF_WIDTH_MM)
    return {"brain": (brain | outer_csf).astype(np.uint8), "cc": label.astype(np.uint8), "csf": csf,
            "primary": primary, "axial": axial, "radial": radial, "secondary": secondary,
            "second_fraction": second_fraction, "s0": s0,
            "callosal_fibres": fibres, "commissure": commissure}


def _callosal_fibres(x, y, z, anatomy: ContextAnatomy):
    """The arch swept left-right to cc_half_width, rising and fanning laterally; fibres along x."""
    base = anatomy.base
    curve, _ = _arch_curve(base.cc_half_length, base.cc_height)
    lifted_z = z - base.cc_base_z - base.cc_lateral_rise * x**2
    lateral = np.abs(x) / base.cc_half_width
    near = (lateral <= 1.0) & (np.abs(lifted_z - base.cc_height / 2) <= base.cc_height * (1 + anatomy.fan))
    mask = np.zeros(x.shape, bool)
    if near.any():
        distance, nearest = _nearest_on_curve(y[near] - base.cc_centre_y, lifted_z[near], curve)
        theta = nearest / (len(curve) - 1) * np.pi  # 0 at the genu (anterior), pi at the splenium
        splenium = 1 + (base.splenium_bulge - 1) * np.exp(-(((theta - np.pi) / 0.45) ** 2))
        genu = 1 + 0.25 * np.exp(-((theta / 0.45) ** 2))
        fan = 1 + anatomy.fan * np.clip((lateral[near] - 0.3) / 0.7, 0, 1)
        mask[near] = distance <= base.cc_thickness / 2 * splenium * genu * fan
    direction = np.zeros(x.shape + (3,), np.float32)
    direction[..., 0] = 1.0
    direction[..., 2] = 2 * base.cc_lateral_rise * x
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    return mask, direction


def _anterior_commissure(x, y, z, anatomy: ContextAnatomy):
    """A thin left-right tube below and in front of the genu, bowing backwards laterally."""
    axis_y = anatomy.ac_y - anatomy.ac_bow * x**2
    mask = (np.hypot(y - axis_y, z - anatomy.ac_z) <= anatomy.ac_radius) & (np.abs(x) <= anatomy.ac_half_width)
    direction = np.zeros(x.shape + (3,), np.float32)
    direction[..., 0] = 1.0
    direction[..., 1] = -2 * anatomy.ac_bow * x
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    return mask, direction
