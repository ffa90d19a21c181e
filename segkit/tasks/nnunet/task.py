"""Run a trained nnU-Net v2 model with nnunetv2's own predictor, in the input's exact geometry.

Steps: read every channel (repeated -i, in channel order) -> reorient to the task orientation
(SCIseg: nibabel "LAS" == SCT "RPI") -> hand nnunetv2 the array in the axis order its
SimpleITK/nibabel readers produce ((z, y, x), spacing reversed) -> predict_single_npy_array
(tile step 0.5, Gaussian weighting, mirroring only with --tta) -> reorient back -> one binary mask
per dataset.json label ("sc": [1, 2] -> label map value in {1, 2}) -> optional cleanup per label.

nnunetv2's predictor needs none of the nnUNet_* environment variables, so inference runs in
process; training (which needs them) runs in a child process, see segkit/training/_worker.py.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

from segkit.errors import ImageError, SegkitError
from segkit.tasks.base import OutputMask, Prediction
from segkit.tasks.nnunet.model_folder import ModelFolder, load_model_folder
from segkit.tasks.nnunet.postprocess import clean_mask, parse_min_size

TILE_STEP_SIZE = 0.5


class NnunetTask:
    def __init__(self, spec=None, model_dir: Path | str | None = None):
        self.spec = spec
        self.model_dir = Path(model_dir) if model_dir is not None else None

    # ------------------------------------------------------------------ protocol

    def predict(self, request, progress=None) -> Prediction:
        model = load_model_folder(self._model_root(request), _folds_of(request))
        min_size = parse_min_size(getattr(request, "remove_small", None))  # checked before any compute
        images = self._read_channels(request, model)
        reference = images[0]
        orientation = self._orientation(model)
        label_map, reorient = self._predict_label_map(model, images, orientation, request)
        outputs = self._outputs(model, label_map, reference, request, min_size)
        info = {
            "framework": "nnunetv2",
            "model_dir": str(model.path),
            "folds": list(model.folds),
            "checkpoint": model.checkpoint,
            "tta": bool(getattr(request, "tta", False)),
            "orientation": orientation,
            "tile_step_size": TILE_STEP_SIZE,
            **self._install_facts(),
        }
        return Prediction(reference=reference, outputs=outputs, info=info)

    # ------------------------------------------------------------------ model and inputs

    def _model_root(self, request) -> Path:
        explicit = getattr(request, "model_dir", None) or self.model_dir
        if explicit is not None:
            return Path(explicit).expanduser()
        from segkit.registry.store import require_installed

        installed = require_installed(self.spec)
        return installed.file_path(_primary_file(self.spec).name)

    def _install_facts(self) -> dict:
        if self.spec is None or not self.spec.files:
            return {}
        from segkit.registry.store import read_manifest

        installed = read_manifest(self.spec.name)
        if installed is None:
            return {}
        entry = next((f for f in installed.manifest["files"] if f["name"] == _primary_file(self.spec).name), None)
        return {"model_url": entry["url"], "model_sha256": entry["sha256"]} if entry else {}

    def _orientation(self, model: ModelFolder) -> str:
        """Registry entry first (it may override), then the model's own json, else the file's order."""
        if self.spec is not None and self.spec.input.orientation:
            return self.spec.input.orientation
        return model.orientation or "native"

    def _read_channels(self, request, model: ModelFolder):
        from segkit.io.image import load_image

        inputs = [Path(p) for p in request.inputs]
        names = ", ".join(f"_{i:04d} {n}" for i, n in enumerate(model.channels))
        if len(inputs) != len(model.channels):
            raise ImageError(
                f"this model takes {len(model.channels)} channel(s) ({names}); give one -i per channel in that "
                f"order, got {len(inputs)}"
            )
        images = [load_image(p, allowed_ndim=(3,)) for p in inputs]
        first = images[0]
        for other in images[1:]:
            if other.shape != first.shape or not np.allclose(other.affine, first.affine, atol=1e-4):
                raise ImageError(
                    f"{other.path}: shape/affine differ from {first.path}; all channels must share one voxel grid"
                )
        return images

    # ------------------------------------------------------------------ prediction

    def _predict_label_map(self, model: ModelFolder, images, orientation: str, request):
        from segkit.io.orientation import reorientation_to

        reference = images[0]
        reorient = reorientation_to(reference.affine, reference.shape, orientation)
        canonical = [reorient.to_canonical(img.data) for img in images]
        spacing = np.sqrt((reorient.canonical_affine[:3, :3] ** 2).sum(axis=0))
        # nnU-Net's readers hand the network (channel, z, y, x) with the spacing reversed
        stacked = np.stack([c.transpose(2, 1, 0) for c in canonical]).astype(np.float32, copy=False)
        with contextlib.redirect_stdout(sys.stderr):  # nnunetv2 prints notes; stdout is for results
            predictor = _build_predictor(model, request)
            label_map = predictor.predict_single_npy_array(stacked, {"spacing": [float(s) for s in spacing[::-1]]})
        label_map = np.asarray(label_map).transpose(2, 1, 0)
        return reorient.from_canonical(label_map), reorient

    def _outputs(self, model: ModelFolder, label_map, reference, request, min_size) -> list[OutputMask]:
        suffixes = {lab.name: lab.suffix for lab in (self.spec.labels if self.spec is not None else ())}
        cleaned = {}
        # outer regions first: region labels nest (lesion inside cord), and cleaning each mask on its
        # own could drop a cord piece that holds lesion voxels, so an inner region is first cut to
        # what its outer one kept, then cleaned
        for label in sorted(model.labels, key=lambda lab: -len(lab.values)):
            mask = np.isin(label_map, label.values)
            for outer in _enclosing_labels(label, model.labels):
                mask &= cleaned[outer.name].astype(bool)
            cleaned[label.name] = clean_mask(
                mask,
                largest=bool(getattr(request, "largest", False)),
                fill_holes=bool(getattr(request, "fill_holes", False)),
                remove_small=min_size,
                voxel_volume_mm3=reference.voxel_volume_mm3,
            )
        outputs = []
        for label in model.labels:
            mask = cleaned[label.name]
            outputs.append(
                OutputMask(
                    name=label.name,
                    suffix=suffixes.get(label.name, label.suffix),
                    mask=mask,
                    value=label.values[-1] if len(label.values) == 1 else 1,
                )
            )
        return outputs


def _enclosing_labels(label, labels) -> list:
    """The other labels whose values include all of this label's (SCIseg: sc [1, 2] encloses lesion 2)."""
    inner = set(label.values)
    return [other for other in labels if other is not label and inner < set(other.values)]


def _folds_of(request) -> list[str] | None:
    folds = getattr(request, "folds", None)
    if not folds:
        return None
    return [str(f).strip() for f in folds]


def _primary_file(spec):
    for file in spec.files:
        if file.role == "model":
            return file
    return spec.files[0]


def _build_predictor(model: ModelFolder, request):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from segkit.runtime.device import resolve_device

    device = torch.device(resolve_device(getattr(request, "device", "auto")))
    tta = bool(getattr(request, "tta", False))
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
        predictor.initialize_from_trained_model_folder(str(model.path), use_folds=folds, checkpoint_name=model.checkpoint)
    except (KeyError, RuntimeError, FileNotFoundError) as exc:
        raise SegkitError(f"{model.path}: cannot load the nnU-Net model ({type(exc).__name__}: {exc})") from None
    return predictor
