"""What the cc_fodf runner and trainer read: a peaks file, or a DWI with its .bval/.bvec.

`load_cc_input` decides which one it was given and checks it, so wrong inputs end with one line
(exit 2) before any computation; `peaks_for_input` then returns world-frame peaks either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import ImageError
from segkit.io.image import Image, load_image, load_label_map
from segkit.io.writer import output_stem
from segkit.tasks.cc_fodf.dwi import (
    MIN_DW_DIRECTIONS,
    DwiInputError,
    Gradients,
    check_matches_volumes,
    count_unique_directions,
    read_fsl_gradients,
    select_single_shell,
)
from segkit.tasks.cc_fodf.peak_frames import N_CHANNELS

NEEDS = "task cc_fodf needs a 4D peaks file (9 volumes) or a 4D DWI with --bval/--bvec"
DWI_NEEDS = (f"a DWI for cc_fodf is one 4D file with at least one b=0 volume and at least {MIN_DW_DIRECTIONS} "
             "diffusion-weighted volumes in distinct directions (b~1000 s/mm^2), with one .bval/.bvec entry per volume")


class CCInputError(ImageError):
    """The image is neither a 9-volume peaks file nor a usable 4D DWI with gradients."""


@dataclass(eq=False)
class CCInput:
    """A checked cc_fodf input. kind "peaks": `image` holds (X,Y,Z,9) world-frame peaks.

    kind "dwi": `image` is the 4D DWI and `gradients` its FSL table; `mask` an optional brain mask.
    """

    kind: str  # "peaks" or "dwi"
    image: Image
    gradients: Gradients | None = None
    mask: np.ndarray | None = None

    def __iter__(self):  # allows: kind, image, gradients, mask = load_cc_input(...)
        return iter((self.kind, self.image, self.gradients, self.mask))


def load_cc_input(path, bval=None, bvec=None, mask=None) -> CCInput:
    """Read and check the input of task cc_fodf (raises CCInputError/GradientError: exit 2)."""
    if (bval is None) != (bvec is None):
        given, missing = ("--bval", "--bvec") if bval is not None else ("--bvec", "--bval")
        raise CCInputError(f"{path}: {given} was given without {missing}; a DWI needs both FSL files")
    image = load_image(path, allowed_ndim=(3, 4), dtype=np.float32, allow_nonfinite=bval is None)
    if image.ndim != 4 and bval is not None:
        raise CCInputError(f"{image.path}: holds a single volume (shape {image.shape}), not a DWI; {DWI_NEEDS}")
    if image.ndim != 4:
        raise CCInputError(f"{image.path}: is a 3D image (shape {image.shape}); {NEEDS}")
    if bval is None:
        return CCInput("peaks", _as_peaks(image))
    gradients = read_fsl_gradients(bval, bvec, image.shape[3], image.path)
    check_matches_volumes(gradients, image.shape[3], image.path, bval, bvec)
    check_dwi_content(gradients, image.path)
    return CCInput("dwi", image, gradients, _load_mask(mask, image))


def check_dwi_content(gradients: Gradients, dwi_path) -> None:
    """Enough for CSD: a b=0 volume and >= 6 distinct directions on the shell used (else exit 2, now)."""
    try:
        keep, shell = select_single_shell(gradients, dwi_path)
    except DwiInputError as exc:
        raise DwiInputError(f"{exc}. {DWI_NEEDS[0].upper()}{DWI_NEEDS[1:]}") from None
    weighted = keep[~gradients.is_b0[keep]]
    n_dirs = count_unique_directions(gradients.bvecs[weighted])
    if n_dirs < MIN_DW_DIRECTIONS:
        raise DwiInputError(f"{dwi_path}: only {n_dirs} distinct gradient direction(s) at b~{shell:g}; {DWI_NEEDS}")


def peaks_for_input(cc_input: CCInput, *, save_to=None, n_jobs: int = 1):
    """World-frame peaks for a checked input: read as given, or computed from the DWI."""
    from segkit.tasks.cc_fodf.peaks import PeaksResult, compute_peaks

    if cc_input.kind == "peaks":
        image = cc_input.image
        return PeaksResult(peaks=image.data, affine=image.affine, source="peaks")
    return compute_peaks(
        cc_input.image,
        cc_input.gradients.bvals,
        cc_input.gradients.bvecs,
        cc_input.mask,
        save_to=save_to,
        n_jobs=n_jobs,
    )


def gradient_files_beside(image_path) -> tuple[Path, Path] | None:
    """`<stem>.bval` and `<stem>.bvec` next to an image (FSL/dcm2niix/BIDS naming), if both exist."""
    image_path = Path(image_path)
    stem = output_stem(image_path)
    bval, bvec = image_path.with_name(stem + ".bval"), image_path.with_name(stem + ".bvec")
    return (bval, bvec) if bval.is_file() and bvec.is_file() else None


def load_cc_input_auto(path, bval=None, bvec=None, mask=None) -> CCInput:
    """Like `load_cc_input`, but finds `.bval/.bvec` beside a DWI when they are not given."""
    if bval is None and bvec is None:
        beside = gradient_files_beside(path)
        if beside is not None:
            bval, bvec = beside
    return load_cc_input(path, bval, bvec, mask)


def _as_peaks(image: Image) -> Image:
    volumes = image.shape[3]
    if volumes != N_CHANNELS:
        raise CCInputError(
            f"{image.path}: has {volumes} volumes; a peaks file has {N_CHANNELS} (3 peaks x (x, y, z)),"
            " and a DWI needs --bval/--bvec"
        )
    image.data = np.nan_to_num(image.data, nan=0.0, posinf=0.0, neginf=0.0)  # MRtrix writes NaN for 'no peak'
    return image


def _load_mask(mask, image: Image) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, np.ndarray):
        data, where = mask, "the mask"
    else:
        loaded = load_label_map(mask, allowed_ndim=(3,))
        data, where = loaded.data, loaded.path
        if not np.allclose(loaded.affine, image.affine, atol=1e-3):
            raise CCInputError(f"{where}: the mask's affine differs from the DWI {image.path}; give a mask in DWI space")
    if data.shape != image.shape[:3]:
        raise CCInputError(f"{where}: mask shape {data.shape} does not match the DWI {image.path} ({image.shape[:3]})")
    if not (data > 0).any():
        raise CCInputError(f"{where}: the brain mask is empty")
    return data > 0
