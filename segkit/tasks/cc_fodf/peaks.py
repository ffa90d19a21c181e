"""DWI -> fODF peaks with dipy (single-shell single-tissue CSD), and peaks files.

Output convention (TractSeg/MRtrix `sh2peaks`): a (X, Y, Z, 9) float32 array, 3 peaks x (x, y, z),
vectors in the **world** RAS frame (see `peak_frames`), each scaled by its fODF amplitude, largest
peak first, zeros where there is no peak or no brain. Amplitudes are dipy's fODF values, so their
absolute scale differs from MRtrix's; SC2S-Net z-scores every sample, which removes that scale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import ImageError
from segkit.io.grid import mask_box
from segkit.io.image import Image
from segkit.tasks.cc_fodf.dwi import (
    MIN_DW_DIRECTIONS,
    DwiInputError,
    Gradients,
    count_unique_directions,
    fsl_bvecs_to_voxel,
    select_single_shell,
    sh_order_for,
)
from segkit.tasks.cc_fodf.peak_frames import N_CHANNELS, N_PEAKS, peaks_voxel_to_world

RELATIVE_PEAK_THRESHOLD = 0.5
MIN_SEPARATION_ANGLE = 25.0
PEAK_SPHERE = "repulsion724"
RESPONSE_FA_THRESHOLDS = (0.7, 0.6, 0.5)  # tried in turn until enough single-fibre voxels are found
MIN_RESPONSE_VOXELS = 10


@dataclass(eq=False)
class PeaksResult:
    """Peaks in world frame (X, Y, Z, 9) plus how they were made (for sidecars and benchmarks)."""

    peaks: np.ndarray
    affine: np.ndarray
    brain_mask: np.ndarray | None = None
    sh_order: int | None = None
    shell_bvalue: float | None = None
    n_directions: int | None = None
    response: tuple | None = None  # (eigenvalues (3,), mean b=0 signal) of the single-fibre response
    n_response_voxels: int | None = None
    seconds: float | None = None
    saved_to: Path | None = None
    source: str = "dwi"  # "dwi" (computed here) or "peaks" (read from a file)

    def info(self) -> dict:
        """JSON-ready facts for the provenance sidecar."""
        facts = {"peaks_source": self.source, "peaks_frame": "world (RAS, MRtrix convention)"}
        if self.source == "dwi":
            facts.update(
                peaks_method="dipy single-shell CSD",
                sh_order=self.sh_order,
                shell_bvalue=self.shell_bvalue,
                n_directions=self.n_directions,
                response_evals=[float(v) for v in self.response[0]] if self.response else None,
                n_response_voxels=self.n_response_voxels,
                peaks_seconds=round(self.seconds, 3) if self.seconds is not None else None,
            )
        if self.saved_to is not None:
            facts["peaks_file"] = str(self.saved_to)
        return facts


def compute_peaks(
    dwi: Image,
    bvals,
    bvecs,
    mask=None,
    *,
    save_to: Path | str | None = None,
    bvecs_frame: str = "fsl",
    sphere: str = PEAK_SPHERE,
    n_jobs: int = 1,
) -> PeaksResult:
    """Three fODF peaks per voxel from a 4D DWI, by constrained spherical deconvolution (dipy).

    - bvals (N,), bvecs (N, 3) or (3, N): FSL convention by default (`bvecs_frame="voxel"` when
      they are already along the array axes, as dipy expects).
    - Multi-shell data: only the b=0 volumes and the shell closest to b=1000 are used.
    - SH order: the largest even order whose (l+1)(l+2)/2 coefficients fit in the number of
      distinct gradient directions of that shell, capped at 8 (`dwi.sh_order_for`).
    - Mask: `mask` (3D, nonzero = brain) or dipy's median_otsu on the mean b=0 image. CSD is fit
      only inside it, on the mask's bounding box.
    - Response: single-fibre response from voxels with high FA (dipy `mask_for_response_ssst`),
      first around the brain's centre, then over the whole brain with lower FA thresholds.
    - Peaks: dipy `peaks_from_model`, relative threshold 0.5, separation 25 degrees, 3 peaks.
    `save_to` writes the peaks NIfTI (float32, the DWI's affine) atomically.
    """
    started = time.perf_counter()
    data, gradients, shell = _single_shell_data(dwi, bvals, bvecs, bvecs_frame)
    gtab = _gradient_table(gradients)
    brain = _brain_mask(data, gtab, mask, dwi)
    box = mask_box(brain)  # not empty: _brain_mask refuses an empty mask
    cropped, cropped_brain = data[box], brain[box]
    del data  # keep only the cropped copy alive during the fit
    n_dirs = count_unique_directions(gradients.bvecs[~gradients.is_b0])
    if n_dirs < MIN_DW_DIRECTIONS:
        raise DwiInputError(
            f"{dwi.path}: only {n_dirs} distinct gradient directions at b~{shell:g}; CSD needs at least {MIN_DW_DIRECTIONS}"
        )
    order = sh_order_for(n_dirs)
    response, n_resp = _estimate_response(gtab, cropped, cropped_brain, dwi)
    voxel_peaks = _fit_peaks(gtab, response, order, cropped, cropped_brain, sphere, n_jobs)
    peaks = np.zeros(brain.shape + (N_CHANNELS,), dtype=np.float32)
    peaks[box] = peaks_voxel_to_world(voxel_peaks, dwi.affine)
    result = PeaksResult(
        peaks=peaks,
        affine=dwi.affine.copy(),
        brain_mask=brain,
        sh_order=order,
        shell_bvalue=shell,
        n_directions=n_dirs,
        response=response,
        n_response_voxels=n_resp,
    )
    if save_to is not None:
        result.saved_to = save_peaks(peaks, dwi, save_to)
    result.seconds = time.perf_counter() - started
    return result


# ------------------------------------------------------------------------------ the steps


def _single_shell_data(dwi: Image, bvals, bvecs, bvecs_frame: str):
    from segkit.tasks.cc_fodf.dwi import GradientError, _bvecs_as_rows, _unit_directions

    if dwi.ndim != 4:
        raise ImageError(f"{dwi.path}: DWI must be 4D (X, Y, Z, volumes), got shape {dwi.shape}")
    bvals = np.asarray(bvals, dtype=np.float64).ravel()
    if len(bvals) != dwi.shape[3]:
        raise GradientError(f"{dwi.path}: {len(bvals)} b-values for {dwi.shape[3]} volumes")
    rows = _unit_directions(_bvecs_as_rows(np.asarray(bvecs, dtype=np.float64), len(bvals), "bvecs"), bvals, "bvecs")
    if bvecs_frame == "fsl":
        rows = fsl_bvecs_to_voxel(rows, dwi.affine)
    elif bvecs_frame != "voxel":
        raise ValueError(f"bvecs_frame must be 'fsl' or 'voxel', got {bvecs_frame!r}")
    gradients = Gradients(bvals=bvals, bvecs=rows)
    keep, shell = select_single_shell(gradients, dwi.path)
    data = dwi.data[..., keep] if len(keep) < len(bvals) else dwi.data
    return np.asarray(data, dtype=np.float32), Gradients(bvals[keep], rows[keep]), shell


def _gradient_table(gradients: Gradients):
    from dipy.core.gradients import gradient_table

    from segkit.tasks.cc_fodf.dwi import B0_THRESHOLD

    return gradient_table(gradients.bvals, bvecs=gradients.bvecs, b0_threshold=B0_THRESHOLD)


def _brain_mask(data: np.ndarray, gtab, mask, dwi: Image) -> np.ndarray:
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != data.shape[:3]:
            raise ImageError(f"brain mask shape {mask.shape} does not match the DWI {dwi.path} ({data.shape[:3]})")
        brain = mask > 0
    else:
        from dipy.segment.mask import median_otsu

        b0_indices = np.flatnonzero(gtab.b0s_mask)
        _, brain = median_otsu(data, vol_idx=b0_indices, median_radius=2, numpass=2)
    if not brain.any():
        raise ImageError(f"{dwi.path}: the brain mask is empty; give a mask with --mask")
    return brain.astype(bool)


def _estimate_response(gtab, data: np.ndarray, brain: np.ndarray, dwi: Image):
    """Single-fibre response: high-FA voxels near the brain's centre, then anywhere in the brain."""
    from dipy.reconst.csdeconv import response_from_mask_ssst

    for region in (_central_box(brain) & brain, brain):
        fa = _fractional_anisotropy(gtab, data, region)
        for threshold in RESPONSE_FA_THRESHOLDS:
            candidates = region & (fa > threshold)
            if candidates.sum() >= MIN_RESPONSE_VOXELS:
                response, _ = response_from_mask_ssst(gtab, data, candidates.astype(np.uint8))
                return response, int(candidates.sum())
    raise DwiInputError(
        f"{dwi.path}: found no single-fibre voxels (FA > {RESPONSE_FA_THRESHOLDS[-1]}) to estimate the CSD response;"
        " check the .bvec file and the brain mask"
    )


def _central_box(brain: np.ndarray) -> np.ndarray:
    """A box of half-size min(10, n/4) voxels around the mask's centroid (dipy's default ROI size)."""
    centre = np.argwhere(brain).mean(axis=0)
    box = np.zeros(brain.shape, bool)
    box[tuple(slice(max(0, int(round(c - r))), int(round(c + r)) + 1) for c, r in zip(centre, _radii(brain.shape)))] = True
    return box


def _radii(shape) -> list[float]:
    return [max(2.0, min(10.0, n / 4)) for n in shape]


def _fractional_anisotropy(gtab, data: np.ndarray, region: np.ndarray) -> np.ndarray:
    from dipy.reconst.dti import TensorModel, fractional_anisotropy

    fit = TensorModel(gtab).fit(data, mask=region)
    return np.nan_to_num(fractional_anisotropy(fit.evals))


def _fit_peaks(gtab, response, order, data, brain, sphere_name, n_jobs) -> np.ndarray:
    """CSD fit and peak extraction inside `brain`; vectors along the array axes, amplitude-scaled."""
    import warnings

    from dipy.data import get_sphere
    from dipy.direction import peaks_from_model
    from dipy.reconst.csdeconv import ConstrainedSphericalDeconvModel

    with warnings.catch_warnings():
        # dipy warns when the order uses most of the directions; sh_order_for already bounds it
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # dipy's note on its legacy SH basis
        model = ConstrainedSphericalDeconvModel(gtab, response, sh_order_max=order)
        found = peaks_from_model(
            model,
            data,
            get_sphere(name=sphere_name),
            RELATIVE_PEAK_THRESHOLD,
            MIN_SEPARATION_ANGLE,
            mask=brain,
            npeaks=N_PEAKS,
            return_sh=False,
            normalize_peaks=False,
            parallel=n_jobs > 1,
            num_processes=n_jobs if n_jobs > 1 else None,
        )
    directions = np.nan_to_num(found.peak_dirs)  # (..., 3 peaks, 3)
    values = np.clip(np.nan_to_num(found.peak_values), 0, None)
    scaled = directions * values[..., None]
    return scaled.reshape(brain.shape + (N_CHANNELS,)).astype(np.float32)


# ------------------------------------------------------------------------------- peaks files


def save_peaks(peaks: np.ndarray, like: Image, out_path: Path | str) -> Path:
    """Write a (X, Y, Z, 9) float32 peaks NIfTI with `like`'s affine (and sform/qform codes), atomically."""
    import nibabel as nib

    from segkit.io.image import is_nifti_path
    from segkit.io.writer import atomic_output, ensure_not_input, write_nifti_image

    out_path = Path(out_path)
    if not is_nifti_path(out_path):
        raise ImageError(f"{out_path}: peaks are written as NIfTI; use a .nii.gz or .nii name")
    ensure_not_input(out_path, like.path)
    image = nib.Nifti1Image(np.asarray(peaks, dtype=np.float32), like.affine)
    sform_code, qform_code = _xform_codes(like)
    image.set_sform(like.affine, code=sform_code)
    image.set_qform(like.affine, code=qform_code)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = b"segkit fODF peaks, world RAS (MRtrix)"
    with atomic_output(out_path) as tmp:
        write_nifti_image(image, tmp, out_path.name)
    return out_path


def _xform_codes(like: Image) -> tuple[int, int]:
    header = like.header
    if header is not None and hasattr(header, "get_sform"):
        _, sform_code = header.get_sform(coded=True)
        _, qform_code = header.get_qform(coded=True)
        return int(sform_code) or 1, int(qform_code) or 1
    return 1, 1
