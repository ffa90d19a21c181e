"""Frames of peak vectors, and moving peak volumes into the model's canonical orientation.

A peaks array has shape (X, Y, Z, 9): 3 peaks x (x, y, z). Its vectors live in one of two frames:

- **world**: scanner RAS+ mm axes (x toward Right, y toward Anterior, z toward Superior). MRtrix's
  `sh2peaks` writes this, and TractSeg's peaks files follow it. segkit's peaks files use it too.
- **voxel**: the array's own axes (component 0 along array axis 0, ...). dipy's `peak_dirs` come
  out in this frame when the bvecs are given along the voxel axes; dipy never applies the affine.

The model is trained on arrays in CANONICAL_AXCODES ("RAS") with vectors along the canonical
array's axes, so channel 0 of each peak always means "along canonical axis 0" whatever the
scanner stored. For an oblique acquisition the canonical axes are the nearest array axes, not the
exact world axes; the vectors are rotated to the canonical axes exactly (no resampling is done).
"""

from __future__ import annotations

import numpy as np

from segkit.io.orientation import Reorientation, reorientation_to

CANONICAL_AXCODES = "RAS"
N_PEAKS = 3
N_CHANNELS = 3 * N_PEAKS
FRAMES = ("world", "voxel")


SIGN_RULE = ("peaks are axes, not vectors: each peak's sign is set so that v . (1, 1, 1) > 0 in the canonical "
             "frame (on a tie, its first non-zero component > 0)")


def canonical_signs(peaks: np.ndarray) -> np.ndarray:
    """(..., 9) peaks with each peak's sign chosen by SIGN_RULE, so v and -v give the same array.

    No rule is continuous everywhere (an axis has no continuous choice of sign); this one changes
    sign only on the plane x + y + z = 0, 55 degrees from each of the RAS axes along which the
    callosal (x), cingulum (y) and corticospinal (z) fibres run. -v's key is exactly -(v's key) in
    floating point, so the choice never depends on the sign given.
    """
    vectors = np.asarray(peaks).reshape(np.shape(peaks)[:-1] + (N_PEAKS, 3))
    return (vectors * sign_key(vectors)[..., None]).reshape(np.shape(peaks)).astype(np.asarray(peaks).dtype)


def sign_key(vectors):
    """+1/-1 per (..., 3) vector by SIGN_RULE; works on numpy arrays and torch tensors alike."""
    key = vectors[..., 0] + vectors[..., 1] + vectors[..., 2]
    for component in range(3):
        key = key + (key == 0) * vectors[..., component]
    return (key >= 0) * 2.0 - 1.0


def voxel_axes_rotation(affine: np.ndarray) -> np.ndarray:
    """The rotation (3x3, columns = unit world directions of the voxel axes) of an affine.

    The voxel sizes are divided out; a sheared affine gets its nearest rotation (or rotation with
    reflection) from the polar decomposition, so vectors keep their length.
    """
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    u, _, vt = np.linalg.svd(linear / np.linalg.norm(linear, axis=0))
    return u @ vt


def peaks_voxel_to_world(peaks: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Peak vectors along the array axes (dipy) -> world RAS axes (MRtrix). Shape (..., 9) kept."""
    return _rotate_peaks(peaks, voxel_axes_rotation(affine))


def peaks_world_to_voxel(peaks: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Peak vectors along world RAS axes (MRtrix) -> along the array axes of `affine`."""
    return _rotate_peaks(peaks, voxel_axes_rotation(affine).T)


def reorient_peaks(
    peaks: np.ndarray,
    affine: np.ndarray,
    target_axcodes: str = CANONICAL_AXCODES,
    *,
    frame: str = "world",
) -> tuple[np.ndarray, Reorientation]:
    """Reorient a (X, Y, Z, 9) peaks volume to `target_axcodes` and express its vectors there.

    `frame` says how the input vectors are expressed ("world" for MRtrix/segkit peaks files,
    "voxel" for raw dipy output). The result's vectors are along the target array's axes, and the
    returned Reorientation maps masks back with `from_canonical` (its `canonical_affine` is the
    target array's affine).
    """
    _check_peaks_shape(peaks)
    reorientation = reorientation_to(affine, peaks.shape, target_axcodes)
    world = _as_world(peaks, affine, frame)
    moved = reorientation.to_canonical(world)
    return peaks_world_to_voxel(moved, reorientation.canonical_affine).astype(peaks.dtype, copy=False), reorientation


def peaks_from_canonical(canonical_peaks: np.ndarray, reorientation: Reorientation, *, frame: str = "world") -> np.ndarray:
    """Inverse of `reorient_peaks`: back to the source array order, vectors in `frame`."""
    world = peaks_voxel_to_world(canonical_peaks, reorientation.canonical_affine)
    back = reorientation.from_canonical(world)
    if frame == "voxel":
        back = peaks_world_to_voxel(back, reorientation.source_affine)
    return back.astype(canonical_peaks.dtype, copy=False)


def _as_world(peaks: np.ndarray, affine: np.ndarray, frame: str) -> np.ndarray:
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    return peaks_voxel_to_world(peaks, affine) if frame == "voxel" else np.asarray(peaks)


def _rotate_peaks(peaks: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Apply a 3x3 matrix to each of the 3 vectors packed in the last axis (size 9)."""
    peaks = np.asarray(peaks)
    if peaks.shape[-1] != N_CHANNELS:
        raise ValueError(f"peaks need {N_CHANNELS} values in the last axis, got shape {peaks.shape}")
    vectors = peaks.reshape(peaks.shape[:-1] + (N_PEAKS, 3))
    rotated = vectors @ rotation.T.astype(vectors.dtype if vectors.dtype.kind == "f" else np.float64)
    return rotated.reshape(peaks.shape)


def _check_peaks_shape(peaks: np.ndarray) -> None:
    if peaks.ndim != 4 or peaks.shape[-1] != N_CHANNELS:
        raise ValueError(f"peaks volume must be (X, Y, Z, {N_CHANNELS}), got shape {peaks.shape}")
