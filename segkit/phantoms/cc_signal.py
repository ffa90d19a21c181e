"""The CC phantom's diffusion signal: gradient scheme, tensor model, bias field and Rician noise.

Signals follow the tensor model S = S0 exp(-b g^T D g) (Stejskal-Tanner, as dipy.sims.voxel's
single_tensor/multi_tensor; vectorised here because those loop over gradients in Python, and
tests check both agree), with Rician noise from dipy.sims.voxel.add_noise at SNR = S0_WM / sigma.
Gradient directions: a hemisphere spread by dipy's disperse_charges (electrostatic repulsion).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from segkit.phantoms.cc_anatomy import CSF_DIFFUSIVITY, S0_WM, TRACT_EVALS


@lru_cache(maxsize=8)
def _hemisphere_directions(n: int) -> np.ndarray:
    """n well-spread unit vectors on a hemisphere (dipy's electrostatic repulsion), fixed per n."""
    from dipy.core.sphere import HemiSphere, disperse_charges

    rng = np.random.default_rng(1234)
    start = HemiSphere(theta=np.arccos(rng.uniform(-1, 1, n)), phi=rng.uniform(0, 2 * np.pi, n))
    spread, _ = disperse_charges(start, 500)
    return np.asarray(spread.vertices, dtype=np.float64)


def gradient_scheme(n_directions=32, n_b0=3, bvalue=1000.0, extra_shells=()) -> tuple[np.ndarray, np.ndarray]:
    """b-values and world-frame unit gradients: b0s interleaved at the start, then each shell."""
    directions = _hemisphere_directions(int(n_directions))
    bvals = [np.zeros(n_b0)]
    bvecs = [np.zeros((n_b0, 3))]
    for shell in (bvalue, *extra_shells):
        bvals.append(np.full(len(directions), float(shell)))
        bvecs.append(directions)
    return np.concatenate(bvals), np.concatenate(bvecs)


def tensor_signal(directions, axial, radial, bvals, bvecs) -> np.ndarray:
    """exp(-b g^T D g) for cylindrically symmetric tensors: (..., 3) directions -> (..., N)."""
    cos2 = (np.asarray(directions, np.float32) @ np.asarray(bvecs, np.float32).T) ** 2
    adc = np.asarray(radial)[..., None] + (np.asarray(axial) - np.asarray(radial))[..., None] * cos2
    return np.exp(-np.asarray(bvals, np.float32) * adc)


def tissue_signal(tissue: dict, bvals, bvecs) -> np.ndarray:
    f2 = tissue["second_fraction"][..., None]
    fibres = (1 - f2) * tensor_signal(tissue["primary"], tissue["axial"], tissue["radial"], bvals, bvecs)
    crossing = tissue["second_fraction"] > 0
    if crossing.any():
        fibres[crossing] += 0.5 * tensor_signal(tissue["secondary"][crossing], *TRACT_EVALS, bvals, bvecs)
    free = np.exp(-np.asarray(bvals, np.float32) * CSF_DIFFUSIVITY)
    fibres[tissue["csf"]] = free
    return (tissue["s0"][..., None] * fibres).astype(np.float32)


def add_rician_noise(signal: np.ndarray, snr: float, rng) -> np.ndarray:
    from dipy.sims.voxel import add_noise

    return add_noise(signal, snr, S0_WM, noise_type="rician", rng=rng).astype(np.float32)


def bias_field(rng, shape) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(rng.standard_normal(shape), sigma=max(shape) / 4)
    smooth /= max(np.abs(smooth).max(), 1e-12)
    return (1.0 + 0.1 * smooth).astype(np.float32)
