"""Synthetic skull-stripped brain MRI with gliomas, in the four BraTS contrasts (AutoSAM2's task).

Anatomy per seed, on a 1 mm RAS grid (axial slices along the third axis), background 0 outside
the brain as in BraTS's skull-stripped images:

- a brain ellipsoid with grey/white matter texture (smoothed noise) and CSF-dark ventricles;
- look-alikes that are not tumour, as in real scans: enhancing meninges/vessels at the brain's edge
  and choroid plexus (bright on T1ce), and small white-matter hyperintensities (bright on FLAIR/T2),
  so a threshold on one contrast is a weak segmentation;
- one or two tumours, each a lobulated blob (radius modulated by smooth noise over directions):
  a necrotic core (label 1, NCR), an enhancing rim around it (label 3, ET) and a larger, more
  irregular oedema around both (label 2, ED). Size, shape, position and the core's share vary.

Appearance follows BraTS (relative to normal white matter at 1.0):

    tissue        T1     T1ce   T2     FLAIR
    grey matter   0.80   0.80   1.15   1.05
    CSF           0.30   0.30   2.00   0.25
    necrosis      0.45   0.40   1.80   0.95   dark core on T1ce, T2-bright
    enhancing     0.65   1.80   1.35   1.35   ring enhancement on T1ce, dark on T1
    oedema        0.70   0.80   1.65   1.70   FLAIR/T2-bright, T1-dark

    meninges     0.70   1.75   1.10   0.90
    plexus       0.60   1.70   1.50   0.80
    WM lesion    0.85   0.90   1.50   1.60

each tissue's signal scaled by a random factor in [0.9, 1.1] per case and contrast, then a smooth
bias field per contrast, a random gain per contrast, slight blur and Rician noise.
Labels use the BraTS 2023 convention: 0 background, 1 NCR, 2 ED, 3 ET.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

NCR, ED, ET = 1, 2, 3
CONTRASTS = ("t1n", "t1c", "t2w", "t2f")  # BraTS 2023 file suffixes of T1, T1ce, T2, FLAIR
_TISSUE_SIGNAL = {  # T1, T1ce, T2, FLAIR
    "wm": (1.0, 1.0, 1.0, 1.0),
    "gm": (0.80, 0.80, 1.15, 1.05),
    "csf": (0.30, 0.30, 2.00, 0.25),
    "ncr": (0.45, 0.40, 1.80, 0.95),
    "et": (0.65, 1.80, 1.35, 1.35),
    "ed": (0.70, 0.80, 1.65, 1.70),
    "dura": (0.70, 1.75, 1.10, 0.90),  # enhancing meninges and vessels at the brain's edge: not tumour
    "plexus": (0.60, 1.70, 1.50, 0.80),  # enhancing choroid plexus in the ventricles: not tumour
    "wmh": (0.85, 0.90, 1.50, 1.60),  # white-matter hyperintensities, FLAIR/T2-bright: not tumour
}


@dataclass
class TumourPhantom:
    images: np.ndarray  # float32 (4, X, Y, Z): T1, T1ce, T2, FLAIR
    labels: np.ndarray  # uint8 (X, Y, Z): 0, 1 NCR, 2 ED, 3 ET
    affine: np.ndarray
    n_tumours: int


def make_tumour_phantom(seed: int, shape: tuple[int, int, int] = (64, 64, 48), noise: float = 0.06) -> TumourPhantom:
    """One case. Same seed, same case; seeds differ in brain, tumour count, shape, size and place."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
    centre = np.array(shape, dtype=np.float32) / 2 + rng.uniform(-1.5, 1.5, 3)
    radii = np.array(shape, dtype=np.float32) * rng.uniform(0.40, 0.46, 3)
    brain = _lobulated(grid, centre, radii, rng, roughness=0.04)
    tissue = _normal_tissue(grid, brain, centre, radii, rng)
    labels = np.zeros(shape, dtype=np.uint8)
    n_tumours = int(rng.integers(1, 3))
    for _ in range(n_tumours):
        _add_tumour(grid, brain, centre, radii, labels, rng)
    for name, value in (("ed", ED), ("et", ET), ("ncr", NCR)):
        tissue[labels == value] = name
    images = _render(tissue, brain, rng, noise)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = rng.uniform(-100, -60, 3)
    return TumourPhantom(images, labels, affine, n_tumours)


def _lobulated(grid, centre, radii, rng, roughness: float) -> np.ndarray:
    """Inside of an ellipsoid whose radius varies smoothly with direction (low-order harmonics)."""
    offset = (grid - centre[:, None, None, None]) / radii[:, None, None, None]
    distance = np.sqrt((offset ** 2).sum(0))
    unit = offset / np.maximum(distance, 1e-6)
    modulation = np.ones_like(distance)
    for _ in range(4):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        frequency = rng.uniform(1.0, 3.0)
        modulation += roughness * rng.normal() * np.sin(frequency * np.pi * np.tensordot(direction, unit, 1) + rng.uniform(0, 6.3))
    return distance <= modulation


def _normal_tissue(grid, brain, centre, radii, rng) -> np.ndarray:
    from scipy import ndimage

    tissue = np.full(brain.shape, "wm", dtype=object)
    texture = ndimage.gaussian_filter(rng.normal(size=brain.shape), 2.0)
    offset = (grid - centre[:, None, None, None]) / radii[:, None, None, None]
    cortex = np.sqrt((offset ** 2).sum(0)) > 0.80
    tissue[(cortex | (texture > 0.12)) & brain] = "gm"
    for side in (-1, 1):  # two ventricles beside the midline
        ventricle = centre + np.array([side * radii[0] * 0.18, 0.0, 0.0])
        tissue[_lobulated(grid, ventricle, radii * np.array([0.08, 0.30, 0.15]), rng, 0.05) & brain] = "csf"
    for _ in range(int(rng.integers(3, 8))):  # FLAIR-bright lesions that are not oedema
        where = centre + rng.uniform(-0.55, 0.55, 3) * radii
        size = np.full(3, rng.uniform(0.08, 0.18) * float(radii.min()), dtype=np.float32)
        tissue[_lobulated(grid, where, size, rng, 0.1) & brain] = "wmh"
    for side in (-1, 1):
        plexus = centre + np.array([side * radii[0] * 0.18, rng.uniform(-0.1, 0.1) * radii[1], 0.0])
        tissue[_lobulated(grid, plexus, np.full(3, 1.6, dtype=np.float32), rng, 0.05) & brain] = "plexus"
    edge = _lobulated(grid, centre, radii * 0.93, rng, 0.04)
    tissue[brain & ~edge] = "dura"
    tissue[~brain] = "air"
    return tissue


def _add_tumour(grid, brain, centre, radii, labels, rng) -> None:
    """Core, enhancing rim and oedema of one tumour, placed inside the brain."""
    size = rng.uniform(0.12, 0.24) * float(radii.min()) * 2
    where = centre + rng.uniform(-0.45, 0.45, 3) * radii
    shape = rng.uniform(0.8, 1.25, 3)
    tumour = _lobulated(grid, where, size * shape, rng, 0.12)
    core_share = rng.uniform(0.45, 0.75)
    core = _lobulated(grid, where, size * shape * core_share, rng, 0.12) & tumour
    oedema = _lobulated(grid, where, size * shape * rng.uniform(1.5, 2.0), rng, 0.22)
    labels[oedema & brain & (labels == 0)] = ED
    labels[tumour & brain] = ET
    labels[core & brain] = NCR


def _render(tissue, brain, rng, noise: float) -> np.ndarray:
    from scipy import ndimage

    images = np.zeros((4, *tissue.shape), dtype=np.float32)
    jitter = {name: rng.uniform(0.9, 1.1, 4) for name in _TISSUE_SIGNAL}  # cases differ in contrast too
    for c in range(4):
        signal = np.zeros(tissue.shape, dtype=np.float32)
        for name, values in _TISSUE_SIGNAL.items():
            signal[tissue == name] = values[c] * jitter[name][c]
        signal = ndimage.gaussian_filter(signal, 0.6)
        field = ndimage.gaussian_filter(rng.normal(size=tissue.shape), 8.0)
        bias = 1.0 + 0.08 * field / max(float(field.std()), 1e-12)
        gain = rng.uniform(300, 1200)
        real = signal * np.clip(bias, 0.7, 1.3) + rng.normal(0, noise, tissue.shape)
        imaginary = rng.normal(0, noise, tissue.shape)
        images[c] = gain * np.sqrt(real ** 2 + imaginary ** 2) * brain
    return images


def write_brats_case(phantom: TumourPhantom, folder: Path | str, case_id: str) -> Path:
    """A BraTS 2023-style case folder: <id>/<id>-t1n.nii.gz ... <id>-t2f.nii.gz and <id>-seg.nii.gz."""
    from segkit.io.writer import save_nifti

    case = Path(folder) / case_id
    case.mkdir(parents=True, exist_ok=True)
    for image, suffix in zip(phantom.images, CONTRASTS):
        save_nifti(image, phantom.affine, case / f"{case_id}-{suffix}.nii.gz")
    save_nifti(phantom.labels, phantom.affine, case / f"{case_id}-seg.nii.gz")
    return case


def write_brats_dataset(folder: Path | str, seeds, shape=(64, 64, 48)) -> list[Path]:
    """One BraTS-style case folder per seed, named BraTS-GLI-<seed>-000."""
    return [write_brats_case(make_tumour_phantom(s, shape), folder, f"BraTS-GLI-{s:05d}-000") for s in seeds]
