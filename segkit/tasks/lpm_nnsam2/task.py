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

import sys
from pathlib import Path

from segkit.errors import SegkitError
from segkit.tasks.base import Case, Inferred, Prepared, TaskRunner


class LpmRunner(TaskRunner):
    def __init__(self, spec, options, common):
        super().__init__(spec, options, common)
        self.trained = self._trained_model_runner() if options.model is not None else None
        if self.trained is None and (options.support is None or options.support_mask is None):
            raise SegkitError(
                "lpm_nnsam2 needs --support IMAGE --support-mask MASK (one annotated slice), or --model DIR "
                "from `segkit train -task lpm_nnsam2`"
            )
        self._support = None
        self._done = 0

    # ------------------------------------------------------------------ trained model

    def _trained_model_runner(self):
        from segkit.tasks.lpm_nnsam2.package import model_folder_of
        from segkit.tasks.nnunet.options import SegmentOptions as NnunetOptions
        from segkit.tasks.nnunet.task import NnunetRunner

        folder = model_folder_of(Path(self.options.model))
        return NnunetRunner(self.spec, NnunetOptions(model=folder, backend=self.options.backend), self.common)

    def labels(self):
        return self.trained.labels() if self.trained is not None else self.spec.labels

    def prepare_all(self, cases):
        return super().prepare_all(cases) if self.trained is None else self.trained.prepare_all(cases)

    def predict_many(self, cases, progress=None):
        if self.trained is None:
            yield from super().predict_many(cases, progress)
            return
        for prediction in self.trained.predict_many(cases, None):
            prediction.info.update({"framework": "nnsam2", "model_package": str(Path(self.options.model).resolve())})
            yield prediction

    # ------------------------------------------------------------------ few-shot

    def prepare(self, case: Case) -> Prepared:
        from segkit.tasks.lpm_nnsam2.fewshot import prepare_support
        from segkit.tasks.lpm_nnsam2.inputs import load_support, load_targets

        if self._support is None:  # one support for every target, checked with the first
            self._support = prepare_support(*load_support(self.options.support, self.options.support_mask),
                                            modality=forced_modality(self.options))
        target = load_targets([case.source])[0]
        # the few-shot path takes its own RAS axial frames (slices.py), so no reorientation here
        return Prepared(case, target, [target.data])

    def model_key(self) -> tuple:
        from segkit.runtime.device import resolve_device

        return (self.options.propagator, resolve_device(self.common.device), self.options.backend)

    def load_model(self):
        return make_propagator(self.options.propagator, self.spec, self.common.device, self.options.backend)

    def infer(self, propagator, prepared: Prepared, progress) -> Inferred:
        from segkit.io.writer import atomic_write_text
        from segkit.tasks.lpm_nnsam2.fewshot import pseudo_label, table_text

        support = self._support
        result = pseudo_label(prepared.reference, support, propagator, modality=forced_modality(self.options))
        if "warning" in result.info:
            print(f"segkit: warning: {prepared.reference.path}: {result.info['warning']}", file=sys.stderr)
        self._done += 1
        if progress is not None:
            progress(self._done, None)
        info = {
            "framework": "nnsam2",
            "propagator": self.options.propagator,
            "support": str(Path(self.options.support).resolve()),
            "support_mask": str(Path(self.options.support_mask).resolve()),
            "seed_slices_ras": support.seeds,
            "support_modality": support.modality,
            **propagator_weights(propagator),
            **result.info,
        }
        table = table_text(result.table_rows())
        return Inferred(result.labels, info, {"iou_table": lambda path: atomic_write_text(path, table)})


def make_propagator(name: str, spec, device: str = "auto", backend: str = "auto"):
    """The propagator named on the command line, from installed weights only."""
    if name == "litemedsam":
        from segkit.models.sam import checkpoint_path
        from segkit.tasks.lpm_nnsam2.litemedsam_propagator import LiteMedsamPropagator

        return LiteMedsamPropagator(checkpoint_path("litemedsam"), device=device, backend=backend)
    from segkit.tasks.lpm_nnsam2.sam2_propagator import Sam2Propagator, installed_sam2_checkpoint

    checkpoint, config = installed_sam2_checkpoint(spec)
    propagator = Sam2Propagator.from_checkpoint(checkpoint, config, device=device, backend=backend)
    propagator.weights_path = checkpoint
    return propagator


def forced_modality(options) -> str | None:
    """--modality ct|mri, or None to guess from the intensities."""
    value = getattr(options, "modality", "auto")
    return None if value in (None, "auto") else value


def propagator_weights(propagator) -> dict:
    """Provenance: the propagator's weights file and its sha256."""
    from segkit.registry.fetch import sha256_cached

    path = getattr(propagator, "weights_path", None)
    if path is None:
        return {}
    return {"propagator_weights": str(Path(path).resolve()), "propagator_weights_sha256": sha256_cached(Path(path))}
