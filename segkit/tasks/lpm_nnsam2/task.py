"""`segkit segment -task lpm_nnsam2`: few-shot pseudo-labels from a support slice, or a trained model.

- `--model DIR` (a package from `segkit train -task lpm_nnsam2`): its final nnU-Net model runs on
  each target, through segkit's nnU-Net runner.
- otherwise `--support IMG --support-mask MASK`: the seed slices are propagated through each
  target with SAM2's video predictor (`--propagator sam2`, the default) or LiteMedSAM box
  propagation (`--propagator litemedsam`, offline), and a per-slice score table is written beside
  each target's masks.

Several -i targets give one output set per target. Every input is checked before any model runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError
from segkit.tasks.base import OutputMask, Prediction

PROPAGATORS = ("sam2", "litemedsam")
TABLE_SUFFIX = "_lpm_iou.tsv"


class LpmNnsam2Task:
    def __init__(self, spec):
        self.spec = spec

    def predict(self, request, progress=None) -> Prediction:
        return self.predict_all(request, progress)[0]

    def predict_all(self, request, progress=None) -> list[Prediction]:
        if getattr(request, "model", None) is not None:
            return self._predict_with_model(request, progress)
        return self._predict_fewshot(request, progress)

    # ------------------------------------------------------------------ trained model

    def _predict_with_model(self, request, progress) -> list[Prediction]:
        from segkit.tasks.lpm_nnsam2.package import model_folder_of
        from segkit.tasks.nnunet.task import NnunetTask

        folder = model_folder_of(Path(request.model))
        runner = NnunetTask(self.spec, model_dir=folder)
        predictions = []
        for target in request.inputs:
            prediction = runner.predict(replace(request, inputs=[Path(target)], model_dir=None), None)
            prediction.info.update({"framework": "nnsam2", "model_package": str(Path(request.model).resolve())})
            predictions.append(prediction)
        return predictions

    # ------------------------------------------------------------------ few-shot

    def _predict_fewshot(self, request, progress) -> list[Prediction]:
        from segkit.tasks.lpm_nnsam2.fewshot import prepare_support, pseudo_label, table_text
        from segkit.tasks.lpm_nnsam2.inputs import load_support, load_targets

        support_path, mask_path = getattr(request, "support", None), getattr(request, "support_mask", None)
        if support_path is None or mask_path is None:
            raise SegkitError(
                "lpm_nnsam2 needs --support IMAGE --support-mask MASK (one annotated slice), or --model DIR "
                "from `segkit train -task lpm_nnsam2`"
            )
        name = getattr(request, "propagator", None) or "sam2"
        if name not in PROPAGATORS:
            raise SegkitError(f"--propagator {name!r}: choose sam2 or litemedsam")
        image, mask, seeds = load_support(support_path, mask_path)
        targets = load_targets(request.inputs)
        propagator = make_propagator(name, self.spec, getattr(request, "device", "auto"), getattr(request, "backend", "auto"))
        support = prepare_support(image, mask, seeds)
        total = len(targets)
        done = 0
        predictions = []
        for target in targets:
            result = pseudo_label(target, support, propagator)
            done += 1
            if progress is not None:
                progress(done, total)
            info = {
                "framework": "nnsam2",
                "propagator": name,
                "support": str(Path(support_path).resolve()),
                "support_mask": str(Path(mask_path).resolve()),
                "seed_slices_ras": seeds,
                "support_modality": support.modality,
                **result.info,
                "side_tables": {TABLE_SUFFIX: table_text(result.table_rows())},
            }
            predictions.append(Prediction(reference=target, outputs=self._outputs(result.labels), info=info))
        return predictions

    def _outputs(self, labels: np.ndarray) -> list[OutputMask]:
        return [
            OutputMask(name=lab.name, suffix=lab.suffix, mask=(labels == lab.values[0]).astype(np.uint8), value=lab.values[0])
            for lab in self.spec.labels
        ]


def make_propagator(name: str, spec, device: str = "auto", backend: str = "auto"):
    """The propagator named on the command line, from installed weights only."""
    if name == "litemedsam":
        from segkit.registry.schema import load_registry
        from segkit.registry.store import ensure_offline_task
        from segkit.tasks.lpm_nnsam2.litemedsam_propagator import LiteMedsamPropagator

        weights = ensure_offline_task(load_registry().get("medsam")).file_path("lite_medsam.pth")
        return LiteMedsamPropagator(weights, device=device, backend=backend)
    from segkit.tasks.lpm_nnsam2.sam2_propagator import Sam2Propagator, installed_sam2_checkpoint

    checkpoint, config = installed_sam2_checkpoint(spec)
    return Sam2Propagator.from_checkpoint(checkpoint, config, device=device)
