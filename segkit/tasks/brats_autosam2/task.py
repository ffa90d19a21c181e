"""The brats_autosam2 runner: four contrasts in, one BraTS label map out (0, 1 NCR, 2 ED, 3 ET).

    -i T1 -i T1ce -i T2 -i FLAIR (or -i a BraTS case folder)
      -> four 3D images on one grid (checked), reoriented to RAS
      -> each contrast normalised (z-score over the brain, percentile clip)
      -> AutoSAM2 (hybrid.py): 3D UNet, SAM on the chosen axial slices, class-wise blend
      -> argmax, back to the input's orientation; --largest / --fill-holes / --remove-small per label
      -> one label map <T1 input>_brats_seg.nii.gz, sidecar, QC

Every input is read and checked before the model package is looked for; segkit never runs this
task without a trained package (the authors published no weights).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


from segkit.tasks.base import Case, Inferred, OutputMask, Prediction, Prepared, TaskRunner, check_same_grid



class AutoSam2Runner(TaskRunner):
    def cases(self, inputs: list[Path]) -> list[Case]:
        from segkit.tasks.brats_autosam2.inputs import group_cases

        return [Case(group) for group in group_cases(list(inputs))]

    def prepare(self, case: Case) -> Prepared:
        from segkit.io.image import load_image
        from segkit.io.orientation import reorientation_to

        images = [load_image(path, allowed_ndim=(3,), series=self.common.series) for path in case.inputs]
        check_same_grid(images)
        reference = images[0]
        reorient = reorientation_to(reference.affine, reference.shape, self.orientation())
        return Prepared(case, reference, [reorient.to_canonical(img.data) for img in images], reorient)

    def _folder(self) -> Path:
        from segkit.tasks.brats_autosam2.package import find_model_folder

        return find_model_folder(self.spec, self.options.model)

    def _sam_choice(self, card: dict) -> str:
        return self.options.sam or card.get("sam", "sam2.1-tiny")

    def model_key(self) -> tuple:
        from segkit.runtime.device import resolve_device
        from segkit.tasks.brats_autosam2.package import read_card

        card = read_card(self._folder())
        return (card["weights"]["sha256"], self._sam_choice(card), resolve_device(self.common.device), self.options.backend)

    def load_model(self):
        from segkit.runtime.device import resolve_device
        from segkit.tasks.brats_autosam2.backend import use_backend
        from segkit.tasks.brats_autosam2.package import load_package
        from segkit.tasks.brats_autosam2.sam_stage import build_sam_stage

        device = resolve_device(self.common.device)
        model, info = load_package(self._folder(), device)
        backend = use_backend(model, info.sha256, device, self.options.backend)
        choice = self._sam_choice(info.card)
        if self.options.slice_percentage > 0:
            model.attach_sam(build_sam_stage(choice, device))
        return model, info, choice, backend

    def settings(self):
        from segkit.tasks.brats_autosam2.hybrid import HybridSettings
        from segkit.tasks.brats_autosam2.prompts import PromptSettings

        o = self.options
        prompts = PromptSettings(n_positive=o.positive_points, n_negative=o.negative_points)
        return HybridSettings(slice_percentage=o.slice_percentage, slice_rule=o.slice_rule, bg_blend=o.bg_blend,
                              tumor_blend=o.tumor_blend, prompts=prompts)

    def infer(self, loaded, prepared: Prepared, progress) -> Inferred:
        from segkit.tasks.brats_autosam2.hybrid import predict_volume
        from segkit.tasks.brats_autosam2.inputs import normalise_case

        model, info, choice, backend = loaded
        device = str(next(model.mapper.parameters()).device)  # the mapper stays torch whatever the backend
        started = time.perf_counter()
        labels, output = predict_volume(model, normalise_case(prepared.arrays), self.settings(), device)
        facts = {
            "model": {"folder": str(info.folder.resolve()), "sha256": info.sha256, "network": info.card["network"],
                      "validation": info.card.get("validation", {})},
            "device": device,
            "backend": backend,
            "sam": choice if self.options.slice_percentage > 0 else None,
            "hybrid": {**_plain(self.settings()), "slices_axis": "axial (RAS z)", "slices_chosen": output.slices,
                       "slices_refined": output.refined},
            "labels_meaning": _label_meaning(),
            "inference_seconds": round(time.perf_counter() - started, 3),
        }
        return Inferred(labels, facts)

    def finish(self, prepared: Prepared, inferred: Inferred) -> Prediction:
        """One label map: each label cleaned as asked (post-processing options), then recombined."""
        from segkit.postprocess import parse_min_size, split_labels
        from segkit.registry.schema import LabelSpec

        label_map = prepared.reorientation.from_canonical(inferred.label_map)
        parts = [LabelSpec(name, (value,), "") for value, name in ((1, "ncr"), (2, "ed"), (3, "et"))]
        masks = split_labels(label_map, parts, largest=self.common.largest, fill_holes=self.common.fill_holes,
                             remove_small=parse_min_size(self.common.remove_small),
                             voxel_volume_mm3=prepared.reference.voxel_volume_mm3)
        combined = np.zeros(label_map.shape, dtype=np.uint8)
        for part in parts:
            combined[masks[part.name].astype(bool)] = part.values[0]
        label = self.labels()[0]
        output = OutputMask(name=label.name, suffix=label.suffix, mask=combined, value=1)
        return Prediction(prepared.case, prepared.reference, [output], {**self.provenance(), **inferred.info}, {})


def _plain(settings) -> dict:
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(settings)))


def _label_meaning() -> dict:
    from segkit.tasks.brats_autosam2.package import LABELS

    return {str(k): v for k, v in LABELS.items()}
