"""Synthetic non-contrast head CT with an acute ischaemic stroke lesion (AISCT-SAM's task).

Anatomy per seed, drawn in mm in an RAS frame (x toward Right, y toward Anterior, z toward
Superior), stored in RAS array order with axial slices along the third axis:

- a head ellipsoid with a flat skull base: scalp (soft tissue), a skull shell (cortical bone), a thin CSF rim, a grey
  matter cortex band (35-40 HU) around white matter (25-30 HU), two lateral ventricles (CSF);
- a unilateral hypodense lesion 3-8 HU darker than the same tissue on the other side: an irregular
  blob whose site (cortical/subcortical, anterior/posterior, side) and size vary per seed;
- mild natural asymmetry: ventricles of slightly different size, a low-frequency HU field that
  differs between hemispheres, a head outline that is not quite symmetric;
- head tilt (yaw, about the vertical axis) and roll (about the antero-posterior axis) of a few
  degrees, and an off-centre head: the mid-sagittal plane is neither the array's centre nor aligned;
- Gaussian CT noise.

`truth` holds what tests measure against: the mid-sagittal plane (unit normal and a point, world
mm), the tilt angles, the lesion's side, volume (mL) and HU drop, and the brain mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HU = {"air": -1000.0, "scalp": 40.0, "bone": 1000.0, "csf": 8.0}
GREY_RANGE = (35.0, 40.0)
WHITE_RANGE = (25.0, 30.0)
LESION_DROP_RANGE = (3.0, 8.0)
SKULL_BASE = 0.55  # the floor of the cranial cavity, as a fraction of the head's vertical radius below its centre


@dataclass
class HeadPhantom:
    ct: np.ndarray  # float32 HU, RAS array order
    lesion: np.ndarray  # uint8 {0, 1}
    brain: np.ndarray  # uint8 {0, 1}: everything inside the skull
    affine: np.ndarray
    truth: dict = field(default_factory=dict)


def make_head_phantom(
    seed: int,
    shape: tuple[int, int, int] = (64, 64, 16),
    field_of_view_mm: tuple[float, float, float] = (200.0, 220.0, 96.0),
    noise_hu: float = 3.0,
    max_tilt_deg: float = 5.0,
    lesion: bool = True,
) -> HeadPhantom:
    """One subject. Same seed, same phantom; seeds differ in anatomy, tilt, lesion and noise."""
    rng = np.random.default_rng(seed)
    spacing = np.asarray(field_of_view_mm, dtype=float) / np.asarray(shape, dtype=float)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * spacing  # array centre at world (0, 0, 0)
    subject = _draw_subject(rng, max_tilt_deg)
    world = _world_grid(shape, affine)
    head = _to_head_frame(world, subject)
    ct, brain, grey = _anatomy(head, subject, rng)
    lesion_mask = np.zeros(shape, dtype=bool)
    drop = 0.0
    if lesion:
        lesion_mask, drop = _lesion(head, brain & ~_ventricles(head, subject), subject, rng)
        ct[lesion_mask] -= drop
    ct += rng.normal(0.0, noise_hu, size=shape)
    normal, point = _mid_sagittal_plane(subject)
    truth = {
        "plane_normal": normal.tolist(), "plane_point_mm": point.tolist(),
        "yaw_deg": float(np.degrees(subject["yaw"])), "roll_deg": float(np.degrees(subject["roll"])),
        "lesion_side": subject["lesion_side"], "lesion_drop_hu": float(drop),
        "lesion_ml": float(lesion_mask.sum() * np.prod(spacing) / 1000.0),
        "spacing_mm": spacing.tolist(), "grey_hu": subject["grey"], "white_hu": subject["white"],
        "grey_fraction": float(grey.mean()),
    }
    return HeadPhantom(ct.astype(np.float32), lesion_mask.astype(np.uint8), brain.astype(np.uint8), affine, truth)


def _draw_subject(rng: np.random.Generator, max_tilt_deg: float) -> dict:
    tilt = np.radians(max_tilt_deg)
    return {
        "radii": np.array([rng.uniform(66, 74), rng.uniform(84, 94), rng.uniform(62, 70)]),
        "centre": np.array([rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(8, 16)]),
        "yaw": rng.uniform(-tilt, tilt), "roll": rng.uniform(-tilt, tilt),
        "skull_mm": rng.uniform(5.0, 7.0), "scalp_mm": rng.uniform(3.0, 5.0), "cortex_mm": rng.uniform(5.0, 8.0),
        "grey": rng.uniform(*GREY_RANGE), "white": rng.uniform(*WHITE_RANGE),
        "ventricle_scale": (rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)),  # right, left: mild asymmetry
        "outline_skew": rng.uniform(-0.03, 0.03),  # one side of the head a little wider
        "asymmetry_hu": rng.uniform(0.3, 1.0), "asymmetry_phase": rng.uniform(0, 2 * np.pi, size=3),
        "lesion_side": "right" if rng.random() < 0.5 else "left",
    }


def _world_grid(shape, affine) -> np.ndarray:
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), axis=-1)
    return index * np.diag(affine)[:3].astype(np.float32) + affine[:3, 3].astype(np.float32)


def _rotation(subject: dict) -> np.ndarray:
    """Head frame -> world: roll about the antero-posterior (y) axis, then yaw about z."""
    cy, sy = np.cos(subject["yaw"]), np.sin(subject["yaw"])
    cr, sr = np.cos(subject["roll"]), np.sin(subject["roll"])
    yaw = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    roll = np.array([[cr, 0, sr], [0, 1, 0], [-sr, 0, cr]])
    return yaw @ roll


def _to_head_frame(world: np.ndarray, subject: dict) -> np.ndarray:
    """World mm -> the head's own frame, whose x = 0 plane is the mid-sagittal plane."""
    return ((world - subject["centre"].astype(np.float32)) @ _rotation(subject).astype(np.float32))


def _mid_sagittal_plane(subject: dict) -> tuple[np.ndarray, np.ndarray]:
    return _rotation(subject)[:, 0], subject["centre"].astype(float)


def _ellipsoid_depth(head: np.ndarray, radii: np.ndarray, skew: float = 0.0) -> np.ndarray:
    """Approximate depth (mm) inside an ellipsoid: positive inside, negative outside."""
    scale = radii * np.array([1.0, 1.0, 1.0])
    x = head[..., 0] / (scale[0] * (1.0 + skew * np.sign(head[..., 0])))
    r = np.sqrt(x ** 2 + (head[..., 1] / scale[1]) ** 2 + (head[..., 2] / scale[2]) ** 2)
    # the skull base: a flat floor under the brain, its bone 2.5x thicker than the vault's
    floor = (head[..., 2] + SKULL_BASE * radii[2]) / 2.5
    return np.minimum((1.0 - r) * radii.min(), floor)


def _ventricles(head: np.ndarray, subject: dict) -> np.ndarray:
    mask = np.zeros(head.shape[:3], dtype=bool)
    for side, scale in zip((1.0, -1.0), subject["ventricle_scale"]):
        centre = np.array([side * 9.0, 2.0, 6.0])
        radii = np.array([6.0, 24.0, 9.0]) * scale
        mask |= (((head - centre) / radii) ** 2).sum(axis=-1) < 1.0
    return mask


def _anatomy(head: np.ndarray, subject: dict, rng: np.random.Generator):
    depth = _ellipsoid_depth(head, subject["radii"], subject["outline_skew"])
    ct = np.full(head.shape[:3], HU["air"], dtype=np.float32)
    ct[depth > -subject["scalp_mm"]] = HU["scalp"]
    ct[depth > 0] = HU["bone"] + rng.uniform(-150, 150)
    inner = subject["skull_mm"]
    brain = depth > inner
    ct[brain] = HU["csf"]
    grey = depth > inner + 1.5
    ct[grey] = subject["grey"]
    white = depth > inner + 1.5 + subject["cortex_mm"]
    ct[white] = subject["white"]
    ct[_ventricles(head, subject)] = HU["csf"]
    ct[brain] += _asymmetry_field(head, subject)[brain]
    return ct, brain, grey & ~white


def _asymmetry_field(head: np.ndarray, subject: dict) -> np.ndarray:
    """A low-frequency HU field, different on the two sides (real hemispheres are not mirror images)."""
    phase = subject["asymmetry_phase"]
    wave = np.sin(head[..., 0] / 23.0 + phase[0]) * np.cos(head[..., 1] / 31.0 + phase[1])
    wave += np.sin(head[..., 2] / 19.0 + phase[2])
    return (subject["asymmetry_hu"] * wave / 2.0).astype(np.float32)


def _lesion(head: np.ndarray, allowed: np.ndarray, subject: dict, rng: np.random.Generator):
    """An irregular blob on one side, inside the parenchyma; returns (mask, HU drop)."""
    side = 1.0 if subject["lesion_side"] == "right" else -1.0
    radii = subject["radii"]
    for _ in range(20):  # a site whose blob lies (mostly) in the parenchyma
        centre = np.array([side * rng.uniform(0.25, 0.6) * radii[0], rng.uniform(-0.55, 0.55) * radii[1],
                           rng.uniform(-0.2, 0.35) * radii[2]])
        size = rng.uniform(9.0, 22.0) * np.array([rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.3), rng.uniform(0.8, 1.2)])
        relative = (head - centre) / size
        angle = np.arctan2(relative[..., 1], relative[..., 0])
        ripple = 1.0 + 0.15 * np.sin(3 * angle + rng.uniform(0, 2 * np.pi)) * np.cos(2 * relative[..., 2])
        mask = ((relative ** 2).sum(axis=-1) < ripple ** 2) & allowed & (side * head[..., 0] > 2.0)
        if mask.sum() >= 8:
            return mask, float(rng.uniform(*LESION_DROP_RANGE))
    raise RuntimeError("no lesion site found inside the parenchyma; the field of view is too small")


def write_head_ct_dataset(folder, seeds, **phantom_options) -> list:
    """An nnU-Net v2 folder (dataset.json, imagesTr/CASE_0000.nii.gz, labelsTr/CASE.nii.gz) of phantoms,
    the CT only (ais_ncct builds the mirror channel itself). Returns the phantoms."""
    import json
    from pathlib import Path

    import nibabel as nib

    folder = Path(folder)
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    phantoms = []
    for seed in seeds:
        phantom = make_head_phantom(seed, **phantom_options)
        case = f"head_{seed:03d}"
        nib.save(nib.Nifti1Image(np.round(phantom.ct).astype(np.int16), phantom.affine), folder / "imagesTr" / f"{case}_0000.nii.gz")
        nib.save(nib.Nifti1Image(phantom.lesion, phantom.affine), folder / "labelsTr" / f"{case}.nii.gz")
        phantoms.append(phantom)
    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "lesion": 1},
               "numTraining": len(phantoms), "file_ending": ".nii.gz", "name": "HeadCTPhantoms"}
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2), encoding="utf-8")
    return phantoms
