"""Support-to-target alignment before any prompt: the support's annotation, placed where the
target's muscles are.

Another subject lies elsewhere in the scanner: centimetres off, turned, bigger or smaller, with
another field of view and slice count. So each annotated support slice is registered to the
target (SimpleITK, in millimetres, so fields of view and pixel sizes may differ):

1. the target slice at the seed's relative height (nnSAM2 crops every volume to the same levels,
   L3/L4 to L5/S1, so relative height matches levels whatever the slice count);
2. in-plane registration of the support slice onto it: centres of the body matched (image
   moments), then rigid, then affine on the whole slice, then affine again on the posterior
   structures only (the registered annotation's box widened by POSTERIOR_MARGIN_MM), Mattes mutual
   information (CT and MRI alike), three resolutions;
3. the best-aligned slice: of the target slices within BEST_SLICE_WINDOW of that height, the one
   the registered support slice correlates with best. Prompts start there.

Every target slice then gets a reference: the annotation of its nearest seed (by relative
height), mapped through that seed's transform. The propagators prompt from it and the failure
signal measures agreement with it. `register=False` maps by world coordinates only: the
copy-the-support-slice baseline that alignment must beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segkit.tasks.lpm_nnsam2.slices import label_frames_from_ras, resize_2d, FRAME_SIZE

REGISTRATION_CT_WINDOW = (-200.0, 300.0)  # air < fat < muscle < bone: body outline and fascia both visible
BEST_SLICE_WINDOW = 2  # target slices either side of the relative-height slice searched for the best fit
POSTERIOR_MARGIN_MM = 15.0
SHRINK, SMOOTH_MM = (4, 2, 1), (4.0, 2.0, 0.0)


@dataclass
class Alignment:
    starts: dict  # support seed slice -> best-aligned target RAS slice (where prompting starts)
    reference: np.ndarray  # (n_target, 256, 256) registered support labels on every target slice
    support_frames: np.ndarray  # (n_target, 256, 256) uint8: the registered support image, frame-scaled
    info: dict = field(default_factory=dict)  # per seed: transform, best slice, correlation

    @property
    def start_slices(self) -> list[int]:
        return sorted(set(self.starts.values()))


def registration_window(volume: np.ndarray, modality: str):
    """The intensities mapped to 0 and 1 for registration: a wide HU window on CT, the MRI volume's
    0.5-99.5 percentiles."""
    if modality == "ct":
        return REGISTRATION_CT_WINDOW
    return np.percentile(np.asarray(volume, dtype=np.float32), (0.5, 99.5))


def registration_scale(volume: np.ndarray, modality: str, window=None) -> np.ndarray:
    """0-1 float32 intensities over `window` (default: the volume's own). Element-wise, so a slice
    scaled with its volume's window equals that slice of the scaled volume."""
    lo, hi = registration_window(volume, modality) if window is None else window
    volume = np.asarray(volume, dtype=np.float32)
    return np.clip((volume - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0).astype(np.float32)


def slice_image(plane: np.ndarray, affine: np.ndarray, k: int):
    """One RAS axial slice as a 2D SimpleITK image in millimetres (origin, spacing, direction)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(plane, dtype=np.float32).T))
    block = np.asarray(affine, dtype=np.float64)[:2, :2]
    spacing = np.linalg.norm(block, axis=0)
    origin = np.asarray(affine, dtype=np.float64)[:2, 3] + np.asarray(affine, dtype=np.float64)[:2, 2] * k
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in origin])
    image.SetDirection([float(v) for v in (block / spacing).ravel()])
    return image


def resample_onto(moving, fixed, transform, nearest: bool = False) -> np.ndarray:
    """`moving` (2D SimpleITK image) on `fixed`'s grid through transform, as a RAS [i, j] array."""
    import SimpleITK as sitk

    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(moving, fixed, transform, interpolator, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out).T


def register_slice(fixed, moving, fixed_mask=None, initial=None):
    """Transform mapping fixed (target) points to moving (support) points: rigid, then affine."""
    import SimpleITK as sitk

    if initial is None:
        body = [sitk.Cast(image > 0.1, sitk.sitkUInt8) for image in (fixed, moving)]
        initial = sitk.CenteredTransformInitializer(*body, sitk.Euler2DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS)
        initial = _optimise(fixed, moving, initial, None)
    initial = _unwrap(initial)
    affine = sitk.AffineTransform(2)
    affine.SetCenter(initial.GetCenter())
    affine.SetMatrix(initial.GetMatrix())
    affine.SetTranslation(initial.GetTranslation())
    return _optimise(fixed, moving, affine, fixed_mask)


def _optimise(fixed, moving, transform, fixed_mask):
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.NONE)  # every pixel: 2D slices are small, and runs repeat exactly
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=200,
                                                    relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(SHRINK))
    method.SetSmoothingSigmasPerLevel(list(SMOOTH_MM))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(transform, inPlace=False)
    return _unwrap(method.Execute(fixed, moving))


def _unwrap(transform):
    """The single concrete transform inside what the registration returns (a composite of one)."""
    import SimpleITK as sitk

    while isinstance(transform, sitk.CompositeTransform) or transform.GetName() == "CompositeTransform":
        transform = sitk.CompositeTransform(transform).GetNthTransform(0)
    return transform.Downcast()


@dataclass
class Volume:
    """A RAS volume for alignment: intensities, labels (support only), affine, modality."""

    ras: np.ndarray
    affine: np.ndarray
    modality: str
    labels: np.ndarray | None = None


def align_support(support: Volume, seeds: list[int], target: Volume, register: bool = True) -> Alignment:
    """Register each seed slice to the target; the registered annotation on every target slice."""
    import SimpleITK as sitk

    n_support, n_target = support.ras.shape[2], target.ras.shape[2]
    moving_all = registration_scale(support.ras, support.modality)
    window = registration_window(target.ras, target.modality)

    def fixed_slice(k: int) -> np.ndarray:  # the target a slice at a time: no float copy of the whole volume
        return registration_scale(target.ras[:, :, k], target.modality, window)

    frame_scaled = _frame_scaled(support)
    placed = {}
    for seed in seeds:
        height = int(np.clip(np.floor((seed + 0.5) / n_support * n_target), 0, n_target - 1))
        fixed = slice_image(fixed_slice(height), target.affine, height)
        moving = slice_image(moving_all[:, :, seed], support.affine, seed)
        transform = sitk.Transform(2, sitk.sitkIdentity)
        if register:
            transform = _register_seed(fixed, moving, support.labels[:, :, seed], support.affine, seed)
        image = resample_onto(moving, fixed, transform)
        best, score = _best_slice(image, fixed_slice, n_target, height)
        mask = resample_onto(slice_image(support.labels[:, :, seed], support.affine, seed), fixed, transform, nearest=True)
        grey = resample_onto(slice_image(frame_scaled[:, :, seed], support.affine, seed), fixed, transform)
        placed[seed] = (best, mask.astype(np.uint8), grey)
        info = {"relative_height_slice": height, "best_slice": best, "correlation": round(score, 4),
                "transform": [round(float(v), 5) for v in transform.GetParameters()]}
        placed[seed] += (info,)
    return _assemble(placed, n_support, n_target, target.ras.shape[:2])


def _register_seed(fixed, moving, seed_labels, support_affine, seed):
    """Rigid + affine on the whole slice, then affine on the posterior structures only.

    On one ITK thread: the metric and the pyramid's filters sum per thread, so with the machine's
    core count the optimum moved (a few voxels of mask between CI and a laptop). 2D slices are cheap.
    """
    import SimpleITK as sitk

    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        return _register_posterior(fixed, moving, seed_labels, support_affine, seed)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _register_posterior(fixed, moving, seed_labels, support_affine, seed):
    import SimpleITK as sitk

    whole = register_slice(fixed, moving)
    mask = resample_onto(slice_image(seed_labels, support_affine, seed), fixed, whole, nearest=True) > 0
    if not mask.any():
        return whole
    region = np.zeros(mask.shape, dtype=np.uint8)
    spacing = np.asarray(fixed.GetSpacing())
    margin = np.ceil(POSTERIOR_MARGIN_MM / spacing).astype(int)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    region[max(0, rows[0] - margin[0]) : rows[-1] + margin[0] + 1, max(0, cols[0] - margin[1]) : cols[-1] + margin[1] + 1] = 1
    fixed_mask = sitk.GetImageFromArray(np.ascontiguousarray(region.T))
    fixed_mask.CopyInformation(fixed)
    return register_slice(fixed, moving, fixed_mask, initial=whole)


def _best_slice(registered: np.ndarray, fixed_slice, n_slices: int, height: int) -> tuple[int, float]:
    best, best_score = height, -2.0
    for k in range(max(0, height - BEST_SLICE_WINDOW), min(n_slices, height + BEST_SLICE_WINDOW + 1)):
        score = float(np.corrcoef(registered.ravel(), fixed_slice(k).ravel())[0, 1])
        if np.isfinite(score) and score > best_score + 1e-6:
            best, best_score = k, score
    return best, best_score


def _frame_scaled(support: Volume) -> np.ndarray:
    from segkit.tasks.lpm_nnsam2.slices import scale_to_255

    return scale_to_255(support.ras, support.modality)


def _assemble(placed: dict, n_support: int, n_target: int, in_plane) -> Alignment:
    seeds = sorted(placed)
    ras_labels = np.zeros((*in_plane, n_target), dtype=np.uint8)
    frames = np.zeros((n_target, FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
    for k in range(n_target):
        nearest = min(seeds, key=lambda s: (abs((s + 0.5) / n_support - (k + 0.5) / n_target), s))
        _, mask, grey, _ = placed[nearest]
        ras_labels[:, :, k] = mask
        frames[k] = np.clip(np.rint(resize_2d(grey, (FRAME_SIZE, FRAME_SIZE))), 0, 255)
    return Alignment(
        starts={s: placed[s][0] for s in seeds},
        reference=label_frames_from_ras(ras_labels),
        support_frames=frames,
        info={str(s): placed[s][3] for s in seeds},
    )
