"""Synthetic lumbar axial volumes with right/left paraspinal muscle labels (nnSAM2's task).

Anatomy per seed, drawn in mm in an RAS frame centred on the spine (x toward Right, y toward
Anterior, z toward Superior); the array is stored in RAS order, axial slices along the third axis:

- a body ellipse with a subcutaneous fat ring and soft abdominal tissue in front of the spine;
- a vertebral body (cortical rim, marrow core) and posterior elements: a bony ring around the
  spinal canal (CSF) and a spinous process running backwards;
- per side, a multifidus (medial, beside the spinous process) and an erector spinae (lateral),
  whose sizes and positions vary smoothly along z; together they form that side's label
  (1 = right, 2 = left: nnSAM2's two-class form);
- fat infiltration inside the muscles: a subject-level baseline fat fraction plus fatty blobs.

Two modalities share that anatomy: CT in HU and Dixon fat/water images whose ratio F/(F+W) is
the voxel's true fat fraction. Subjects vary in size, muscle shape, position and fat, and every
image gets Gaussian noise. `truth` holds the exact volumes, noise-free mean HU and pooled fat
fraction of each label, so quantification can be checked against known numbers.

`pose` places a subject like a patient on another scanner: the whole body shifted (mm), rotated
in-plane (degrees) and scaled, e.g. `Pose(shift=(12, -9), rotation=8, scale=1.15)` (patients
differ by centimetres; tests/test_lpm_align.py uses +-15 mm, +-10 degrees, 0.8-1.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RIGHT, LEFT = 1, 2
LABEL_NAMES = {RIGHT: "lpm_right", LEFT: "lpm_left"}

# Tissue CT numbers (HU) and fat fractions
HU = {"air": -1000.0, "fat": -100.0, "muscle": 50.0, "soft": 35.0, "csf": 10.0, "cortex": 800.0, "marrow": 250.0}
FF = {"fat": 0.95, "soft": 0.10, "csf": 0.0, "cortex": 0.0, "marrow": 0.45}
PROTON_DENSITY = {"fat": 100.0, "muscle": 80.0, "soft": 70.0, "csf": 90.0, "cortex": 5.0, "marrow": 70.0}


@dataclass(frozen=True)
class Pose:
    shift: tuple[float, float] = (0.0, 0.0)  # mm, x toward Right, y toward Anterior
    rotation: float = 0.0  # degrees, in-plane, counter-clockwise seen from above
    scale: float = 1.0  # whole-body size factor

@dataclass
class LumbarPhantom:
    ct: np.ndarray  # float32 HU
    fat: np.ndarray  # float32 Dixon fat signal
    water: np.ndarray  # float32 Dixon water signal
    labels: np.ndarray  # uint8: 0 background, 1 right LPM, 2 left LPM
    affine: np.ndarray
    truth: dict = field(default_factory=dict)  # per label name: volume_ml, mean_hu, fat_fraction


def make_lumbar_phantom(
    seed: int,
    shape: tuple[int, int, int] = (112, 96, 12),
    spacing: tuple[float, float, float] = (1.0, 1.0, 4.0),
    noise_hu: float = 12.0,
    noise_dixon: float = 2.0,
    pose: Pose | None = None,
) -> LumbarPhantom:
    """One subject. Same seed, same phantom; different seeds differ in anatomy, fat and noise."""
    rng = np.random.default_rng(seed)
    subject = _draw_subject(rng)
    x, y = _posed(*_in_plane_mm(shape, spacing), pose)
    n_slices = shape[2]
    tissue = np.zeros(shape, dtype=np.uint8)  # index into _TISSUES
    muscle_ff = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    for k in range(n_slices):
        t = (k + 0.5) / n_slices  # 0..1 from inferior to superior
        slice_tissue, slice_labels = _draw_slice(x, y, t, subject)
        tissue[:, :, k] = slice_tissue
        labels[:, :, k] = slice_labels
        muscle_ff[:, :, k] = _muscle_fat(x, y, t, subject)
    ff_true = _fat_fraction_map(tissue, muscle_ff)
    hu_true = _hu_map(tissue, ff_true)
    pd = _proton_density(tissue)
    fat_true, water_true = pd * ff_true, pd * (1.0 - ff_true)
    affine = _affine(shape, spacing)
    truth = _truth(labels, hu_true, fat_true, water_true, affine)
    return LumbarPhantom(
        ct=(hu_true + rng.normal(0.0, noise_hu, shape)).astype(np.float32),
        fat=(fat_true + rng.normal(0.0, noise_dixon, shape)).astype(np.float32),
        water=(water_true + rng.normal(0.0, noise_dixon, shape)).astype(np.float32),
        labels=labels,
        affine=affine,
        truth=truth,
    )


def save_lumbar_phantom(phantom: LumbarPhantom, folder: Path | str, stem: str) -> dict[str, Path]:
    """Write <stem>_ct, <stem>_fat, <stem>_water and <stem>_seg (labels) as NIfTI files."""
    import nibabel as nib

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, array in (("ct", phantom.ct), ("fat", phantom.fat), ("water", phantom.water)):
        paths[name] = folder / f"{stem}_{name}.nii.gz"
        nib.save(nib.Nifti1Image(array.astype(np.float32), phantom.affine), str(paths[name]))
    paths["labels"] = folder / f"{stem}_seg.nii.gz"
    nib.save(nib.Nifti1Image(phantom.labels.astype(np.uint8), phantom.affine), str(paths["labels"]))
    return paths


def single_slice_support(labels: np.ndarray, slice_index: int | None = None) -> np.ndarray:
    """A support mask with one annotated axial slice (the middle one by default), zero elsewhere."""
    k = labels.shape[2] // 2 if slice_index is None else slice_index
    support = np.zeros_like(labels)
    support[:, :, k] = labels[:, :, k]
    return support


# ---------------------------------------------------------------------------------------- anatomy

_TISSUES = ("air", "fat", "muscle", "soft", "csf", "cortex", "marrow")
_T = {name: i for i, name in enumerate(_TISSUES)}


def _draw_subject(rng) -> dict:
    return {
        "body": (rng.uniform(46, 52), rng.uniform(38, 43)),  # body ellipse semi-axes (x, y)
        "fat_thickness": rng.uniform(4.0, 7.0),
        "shift": (rng.uniform(-3, 3), rng.uniform(-2, 2)),  # spine centre offset
        "muscle_scale": rng.uniform(0.88, 1.12),
        "es_phase": rng.uniform(0, np.pi),  # how the erector spinae changes along z
        "asymmetry": rng.uniform(-0.08, 0.08),  # right vs left size difference
        "base_ff": rng.uniform(0.03, 0.10),
        "blobs": _draw_blobs(rng),
    }


def _draw_blobs(rng) -> list[tuple[float, float, float, float]]:
    """Fatty infiltrates (x, y, z fraction, radius mm) inside the muscle area of either side."""
    blobs = []
    for _ in range(int(rng.integers(4, 9))):
        side = rng.choice([-1.0, 1.0])
        blobs.append((side * rng.uniform(8, 26), rng.uniform(-30, -18), rng.uniform(0, 1), rng.uniform(1.5, 3.5)))
    return blobs


def _in_plane_mm(shape, spacing) -> tuple[np.ndarray, np.ndarray]:
    xs = (np.arange(shape[0]) - (shape[0] - 1) / 2) * spacing[0]
    ys = (np.arange(shape[1]) - (shape[1] - 1) / 2) * spacing[1] + 8.0  # body centre a bit anterior
    return np.meshgrid(xs, ys, indexing="ij")


def _posed(x, y, pose: Pose | None) -> tuple[np.ndarray, np.ndarray]:
    """Scanner coordinates -> the subject's own: undo the pose's shift, rotation and scale."""
    if pose is None:
        return x, y
    angle = np.deg2rad(pose.rotation)
    dx, dy = x - pose.shift[0], y - pose.shift[1]  # about the body centre (0, 0)
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / pose.scale
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / pose.scale
    return u, v


def _ellipse(x, y, cx, cy, ax, ay) -> np.ndarray:
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def _draw_slice(x, y, t: float, s: dict) -> tuple[np.ndarray, np.ndarray]:
    tissue = np.full(x.shape, _T["air"], dtype=np.uint8)
    bx, by = s["body"]
    tissue[_ellipse(x, y, 0, 0, bx, by)] = _T["fat"]
    inner = _ellipse(x, y, 0, 0, bx - s["fat_thickness"], by - s["fat_thickness"])
    tissue[inner] = _T["soft"]
    sx, sy = s["shift"]
    labels = np.zeros(x.shape, dtype=np.uint8)
    for side in (1.0, -1.0):  # fascia and intermuscular fat: a fat envelope around each side's muscles
        tissue[_muscles_of_side(x, y, t, s, side, sx, sy, pad=2.5) & inner] = _T["fat"]
    for side, label in ((1.0, RIGHT), (-1.0, LEFT)):
        muscle = _muscles_of_side(x, y, t, s, side, sx, sy) & inner
        tissue[muscle] = _T["muscle"]
        labels[muscle] = label
    bone, canal = _spine(x, y, t, sx, sy)
    tissue[bone == 1] = _T["cortex"]
    tissue[bone == 2] = _T["marrow"]
    tissue[canal] = _T["csf"]
    labels[(bone > 0) | canal] = 0
    return tissue, labels


def _muscles_of_side(x, y, t, s, side, sx, sy, pad: float = 0.0) -> np.ndarray:
    scale = s["muscle_scale"] * (1.0 + side * s["asymmetry"])
    along_z = 1.0 + 0.15 * np.sin(np.pi * t + s["es_phase"])  # the erector spinae swells and thins
    mf_grow = 0.85 + 0.3 * t  # the multifidus grows toward the sacrum (here: along z)
    multifidus = _ellipse(x, y, sx + side * 8.5 * scale, sy - 23.0, 5.5 * scale * mf_grow + pad, 8.0 * scale + pad)
    erector = _ellipse(
        x, y, sx + side * (20.0 + 2.0 * along_z) * scale, sy - 22.0 + 2.0 * t,
        9.0 * scale * along_z + pad, 8.0 * scale + pad,
    )
    return multifidus | erector


def _spine(x, y, t, sx, sy) -> tuple[np.ndarray, np.ndarray]:
    """(bone map: 1 cortex, 2 marrow; spinal canal mask)."""
    bone = np.zeros(x.shape, dtype=np.uint8)
    body_r = 12.0 + 1.0 * t
    bone[_ellipse(x, y, sx, sy + 6.0, body_r * 1.2, body_r)] = 1
    bone[_ellipse(x, y, sx, sy + 6.0, body_r * 1.2 - 2.0, body_r - 2.0)] = 2
    bone[_ellipse(x, y, sx, sy - 12.0, 8.0, 7.0)] = 1  # neural arch around the canal
    spinous = (np.abs(x - sx) <= 2.0) & (y <= sy - 16.0) & (y >= sy - 33.0)
    bone[spinous] = 1
    canal = _ellipse(x, y, sx, sy - 12.0, 5.0, 4.5)
    return bone, canal


def _muscle_fat(x, y, t: float, s: dict) -> np.ndarray:
    """Fat fraction of muscle voxels at height t (0..1): baseline plus infiltrates (up to 0.8)."""
    ff = np.full(x.shape, s["base_ff"], dtype=np.float32)
    for bx, by, bz, radius in s["blobs"]:
        z_weight = np.exp(-((t - bz) ** 2) / 0.05)
        blob = np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * radius**2)) * z_weight
        ff = np.maximum(ff, (0.8 * blob).astype(np.float32))
    return ff


def _fat_fraction_map(tissue: np.ndarray, muscle_ff: np.ndarray) -> np.ndarray:
    ff = np.zeros(tissue.shape, dtype=np.float64)
    for name, value in FF.items():
        ff[tissue == _T[name]] = value
    muscle = tissue == _T["muscle"]
    ff[muscle] = muscle_ff[muscle]
    return ff


def _hu_map(tissue: np.ndarray, ff: np.ndarray) -> np.ndarray:
    hu = np.zeros(tissue.shape, dtype=np.float64)
    for name in _TISSUES:
        hu[tissue == _T[name]] = HU[name]
    muscle = tissue == _T["muscle"]
    hu[muscle] = (1.0 - ff[muscle]) * HU["muscle"] + ff[muscle] * HU["fat"]  # fat-infiltrated muscle
    return hu


def _proton_density(tissue: np.ndarray) -> np.ndarray:
    pd = np.zeros(tissue.shape, dtype=np.float64)
    for name, value in PROTON_DENSITY.items():
        pd[tissue == _T[name]] = value
    return pd


def _affine(shape, spacing) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    return affine


def _truth(labels, hu, fat, water, affine) -> dict:
    from segkit.io.image import voxel_volume_mm3

    voxel_ml = voxel_volume_mm3(affine) / 1000.0
    truth = {}
    for value, name in LABEL_NAMES.items():
        region = labels == value
        truth[name] = {
            "label": value,
            "voxels": int(region.sum()),
            "volume_ml": float(region.sum() * voxel_ml),
            "mean_hu": float(hu[region].mean()),
            "fat_fraction": float(fat[region].sum() / (fat[region] + water[region]).sum()),
        }
    return truth
