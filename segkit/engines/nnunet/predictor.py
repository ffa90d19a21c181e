"""nnunetv2's own predictor, built once per model and device; arrays in, label map out.

Arrays are handed over in the axis order nnU-Net's SimpleITK/nibabel readers produce ((z, y, x),
spacing reversed), predicted with predict_single_npy_array (tile step 0.5, Gaussian weighting,
mirroring only with --tta), and the label map is returned in the caller's (x, y, z) order.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from segkit.engines.nnunet.model_folder import ModelFolder
from segkit.errors import SegkitError

TILE_STEP_SIZE = 0.5


def build_predictor(model: ModelFolder, device_name: str, tta: bool):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from segkit.runtime.device import resolve_device

    device = torch.device(resolve_device(device_name))
    predictor = nnUNetPredictor(
        tile_step_size=TILE_STEP_SIZE,
        use_gaussian=True,
        use_mirroring=tta,
        perform_everything_on_device=device.type == "cuda",
        device=device,
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    folds = tuple(int(f) if f.isdigit() else f for f in model.folds)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # nnunetv2 prints notes; stdout is for results
            predictor.initialize_from_trained_model_folder(str(model.path), use_folds=folds, checkpoint_name=model.checkpoint)
    except (KeyError, RuntimeError, FileNotFoundError) as exc:
        raise SegkitError(f"{model.path}: cannot load the nnU-Net model ({type(exc).__name__}: {exc})") from None
    return predictor


def predict_label_map(predictor, channels: list[np.ndarray], affine: np.ndarray) -> np.ndarray:
    """Label map of (x, y, z) channel arrays whose voxel axes `affine` maps to world mm."""
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    stacked = np.stack([a.transpose(2, 1, 0) for a in channels]).astype(np.float32, copy=False)
    with contextlib.redirect_stdout(sys.stderr):
        label_map = predictor.predict_single_npy_array(stacked, {"spacing": [float(s) for s in spacing[::-1]]})
    return np.asarray(label_map).transpose(2, 1, 0)
