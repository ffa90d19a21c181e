"""A brain-like diffusion MRI phantom with a corpus callosum (CC) and its ground-truth mask.

`make_cc_phantom` draws one subject (anatomy: `cc_anatomy`; signal and noise: `cc_signal`) and
stores it in any orientation; the writers here put subjects and nnU-Net-style datasets on disk.

Files are written in FSL conventions: bvecs in FSL's radiological voxel frame (x flipped for a
positive-determinant affine), so `segkit.tasks.cc_fodf` reads them like scanner data.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from segkit.io.writer import atomic_write_json, save_nifti
from segkit.phantoms.cc_anatomy import draw_anatomy, ras_affine, tissue_model, world_grid
from segkit.phantoms.cc_signal import add_rician_noise, bias_field, gradient_scheme, tissue_signal


class CCPhantom(NamedTuple):
    dwi: np.ndarray  # (X, Y, Z, N) float32
    affine: np.ndarray  # 4x4, voxel -> world RAS mm
    bvals: np.ndarray  # (N,)
    bvecs: np.ndarray  # (N, 3), FSL convention for `affine` (zeros for b=0)
    cc_mask: np.ndarray  # (X, Y, Z) uint8
    brain_mask: np.ndarray  # (X, Y, Z) uint8


class SubjectFiles(NamedTuple):
    dwi: Path
    bval: Path
    bvec: Path
    cc_mask: Path
    brain_mask: Path


def make_cc_phantom(
    seed: int = 0,
    *,
    shape: tuple[int, int, int] = (48, 56, 40),
    voxel_size: float = 2.5,
    snr: float | None = None,
    cc_thickness_mm: float | None = None,
    cc_arch_height_mm: float | None = None,
    n_directions: int = 32,
    n_b0: int = 3,
    bvalue: float = 1000.0,
    extra_shells: tuple[float, ...] = (),
    axcodes: str = "RAS",
    context: bool = False,
) -> CCPhantom:
    """One synthetic subject. Unset parameters are drawn from `seed` (SNR in [20, 35]).

    `axcodes` picks the stored array orientation (e.g. "LAS" as dcm2niix writes, "PIR", ...);
    the anatomy is the same, only the storage and the FSL bvecs change. `context=True` draws the
    anatomy of `cc_context` (callosal fibres beyond the label, an anterior commissure, head tilt;
    SNR in [15, 40]), where the label cannot be read off the anisotropy alone.
    """
    rng = np.random.default_rng(seed)
    affine = ras_affine(shape, voxel_size)
    bvals, world_bvecs = gradient_scheme(n_directions, n_b0, bvalue, extra_shells)
    if context:
        from segkit.phantoms.cc_context import context_tissue_model, draw_context_anatomy, subject_grid

        drawn = draw_context_anatomy(rng, shape, voxel_size)
        snr = float(rng.uniform(15, 40)) if snr is None else float(snr)
        tissue = context_tissue_model(subject_grid(shape, affine, drawn), drawn, rng, voxel_size)
    else:
        anatomy = draw_anatomy(rng, shape, voxel_size, cc_thickness_mm, cc_arch_height_mm)
        snr = float(rng.uniform(20, 35)) if snr is None else float(snr)
        tissue = tissue_model(world_grid(shape, affine, anatomy.centre), anatomy, rng, voxel_size)
    signal = tissue_signal(tissue, bvals, world_bvecs)
    signal *= bias_field(rng, shape)[..., None]
    dwi = add_rician_noise(signal, snr, rng)
    return _stored_as(axcodes, dwi, affine, bvals, world_bvecs, tissue["cc"], tissue["brain"])


def _stored_as(axcodes, dwi, built_affine, bvals, world_bvecs, cc, brain) -> CCPhantom:
    """Store the RAS-built subject in `axcodes` order, with FSL bvecs for the stored affine."""
    from segkit.io.orientation import reorientation_to
    from segkit.tasks.cc_fodf.dwi import voxel_bvecs_to_fsl
    from segkit.tasks.cc_fodf.peak_frames import voxel_axes_rotation

    move = reorientation_to(built_affine, dwi.shape, axcodes)
    affine = move.canonical_affine
    voxel_bvecs = world_bvecs @ voxel_axes_rotation(affine)  # rows: R^T g
    return CCPhantom(
        dwi=move.to_canonical(dwi),
        affine=affine,
        bvals=bvals,
        bvecs=voxel_bvecs_to_fsl(voxel_bvecs, affine),
        cc_mask=move.to_canonical(cc),
        brain_mask=move.to_canonical(brain),
    )


# --------------------------------------------------------------------------------- files


def write_cc_subject(phantom: CCPhantom, folder, name: str = "sub-001") -> SubjectFiles:
    """`<name>_dwi.nii.gz/.bval/.bvec`, `<name>_cc.nii.gz` and `<name>_brainmask.nii.gz` in `folder`."""
    folder = Path(folder)
    files = SubjectFiles(
        dwi=folder / f"{name}_dwi.nii.gz",
        bval=folder / f"{name}_dwi.bval",
        bvec=folder / f"{name}_dwi.bvec",
        cc_mask=folder / f"{name}_cc.nii.gz",
        brain_mask=folder / f"{name}_brainmask.nii.gz",
    )
    _write_dwi(phantom, files.dwi, files.bval, files.bvec)
    save_nifti(phantom.cc_mask.astype(np.uint8), phantom.affine, files.cc_mask)
    save_nifti(phantom.brain_mask.astype(np.uint8), phantom.affine, files.brain_mask)
    return files


def write_cc_dataset(
    root,
    n_subjects: int,
    *,
    first_seed: int = 0,
    case_prefix: str = "cc",
    as_peaks: bool = False,
    **phantom_kwargs,
) -> list[str]:
    """N subjects in nnU-Net layout for `segkit train -task cc_fodf --data ROOT`.

    imagesTr/<case>_0000.nii.gz is the DWI with <case>_0000.bval/.bvec beside it, or (as_peaks)
    a 9-volume world-frame peaks file computed with `compute_peaks` inside the true brain mask.
    labelsTr/<case>.nii.gz is the CC mask. Seeds are first_seed, first_seed+1, ...
    """
    root = Path(root)
    cases = []
    for index in range(n_subjects):
        case = f"{case_prefix}_{index:03d}"
        phantom = make_cc_phantom(first_seed + index, **phantom_kwargs)
        image_path = root / "imagesTr" / f"{case}_0000.nii.gz"
        if as_peaks:
            write_phantom_peaks(phantom, image_path)
        else:
            _write_dwi(phantom, image_path, image_path.with_name(f"{case}_0000.bval"), image_path.with_name(f"{case}_0000.bvec"))
        save_nifti(phantom.cc_mask.astype(np.uint8), phantom.affine, root / "labelsTr" / f"{case}.nii.gz")
        cases.append(case)
    _write_dataset_json(root, cases, as_peaks)
    return cases


def _write_dwi(phantom: CCPhantom, dwi_path: Path, bval_path: Path, bvec_path: Path) -> None:
    from segkit.tasks.cc_fodf.dwi import Gradients, write_fsl_gradients

    save_nifti(phantom.dwi.astype(np.float32), phantom.affine, dwi_path)
    write_fsl_gradients(Gradients(phantom.bvals, phantom.bvecs), bval_path, bvec_path)


def write_phantom_peaks(phantom: CCPhantom, path) -> Path:
    """Compute world-frame peaks (inside the true brain mask) and write them as a 9-volume NIfTI."""
    from segkit.io.image import Image
    from segkit.tasks.cc_fodf.peaks import compute_peaks

    path = Path(path)
    dwi = Image(data=phantom.dwi, affine=phantom.affine, path=path.with_name("phantom_dwi.nii.gz"))
    result = compute_peaks(dwi, phantom.bvals, phantom.bvecs, phantom.brain_mask)
    save_nifti(result.peaks, phantom.affine, path)
    return path


def _write_dataset_json(root: Path, cases: list[str], as_peaks: bool) -> None:
    description = {
        "name": "segkit CC phantom",
        "channel_names": {"0": "peaks" if as_peaks else "dwi"},
        "labels": {"background": 0, "cc": 1},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
        "description": "synthetic DWI phantoms from segkit.phantoms.cc_dwi",
    }
    atomic_write_json(root / "dataset.json", description)
