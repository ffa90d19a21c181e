"""The ais_ncct runner: a non-contrast head CT in, the stroke lesion mask out, in the input's geometry.

    read (HU; refused if not CT, 2D, or too few slices)  -> RAS
    -> brain mask, skull-stripped CT, registered mirror (cached per case)
    -> model spacing, nnU-Net CT normalisation with the training set's statistics
    -> sliding-window AISCT-SAM, a slab at a time -> probability back on the RAS grid -> >= 0.5
       inside the brain (uint8, filled slab by slab: no float copy of the volume)
    -> the input's orientation (the base runner)

segkit never runs this task without a trained package: the authors' weights cannot be fetched.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError
from segkit.tasks.base import Case, Inferred, Prepared, TaskRunner

MIN_SLICES = 3  # the depth adapters' and the prompt generator's 3-slice kernels need a slice each side


def canonical_spacing(reorientation) -> tuple[float, float, float]:
    affine = reorientation.canonical_affine
    return tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))


class AisNcctRunner(TaskRunner):
    input_ndim = (2, 3)

    def prepare(self, case: Case) -> Prepared:
        from segkit.io.orientation import reorientation_to
        from segkit.tasks.ais_ncct.ct import compact_hu, read_ct

        image = read_ct(case.source, series=self.common.series)
        image.data = compact_hu(image.data)  # int16 where that is lossless: half the float32 volume
        slices = min(image.shape)
        if slices < MIN_SLICES:
            raise SegkitError(f"{case.source}: {slices} slice(s); ais_ncct needs at least {MIN_SLICES} axial slices "
                              f"for its 3D depth context (one on each side of every slice)")
        reorient = reorientation_to(image.affine, image.shape, self.orientation())
        return Prepared(case, image, [reorient.to_canonical(image.data)], reorient)

    def _folder(self) -> Path:
        from segkit.tasks.ais_ncct.package import check_backbone, find_package, read_card

        folder = find_package(self.spec, self.options.model)
        check_backbone(read_card(folder), self.options.backbone, folder)
        return folder

    def model_key(self) -> tuple:
        from segkit.runtime.device import resolve_device
        from segkit.tasks.ais_ncct.package import read_card

        card = read_card(self._folder())
        return (card["weights"]["sha256"], resolve_device(self.common.device))

    def load_model(self):
        from segkit.runtime.device import resolve_device
        from segkit.tasks.ais_ncct.package import load_package

        return load_package(self._folder(), resolve_device(self.common.device))

    def infer(self, model, prepared: Prepared, progress) -> Inferred:
        from segkit.tasks.ais_ncct.inference import lesion_mask
        from segkit.tasks.ais_ncct.pipeline import default_cache_dir, preprocess_case

        started = time.perf_counter()
        hu = prepared.arrays[0]
        spacing = canonical_spacing(prepared.reorientation)
        case = preprocess_case(hu, spacing, default_cache_dir())
        card, network = model.card, model.card["network"]
        device = str(next(model.net.parameters()).device)
        value = self.spec.labels[0].values[0]
        lesion = lesion_mask(model.net, case, card, self.spec.threshold, value, device, progress)
        info = {
            "model": {"folder": str(model.folder.resolve()), "sha256": model.sha256, "network": network,
                      "validation_dice": card.get("training", {}).get("validation_dice")},
            "backbone": {**card["backbone"]},
            "device": device,
            "registration": case.registration,
            "preprocessing": {"skull_stripping": "HU -15..100, opening 3 mm, largest component, holes filled",
                              "brain_ml": float(case.brain.sum() * np.prod(spacing) / 1000.0),
                              "model_spacing_mm": card.get("spacing_mm"), "input_spacing_mm": list(spacing)},
            "inference": {"seconds": round(time.perf_counter() - started, 3), "threshold": self.spec.threshold},
        }
        return Inferred(lesion, info, self._artifacts(prepared, case))

    def _artifacts(self, prepared: Prepared, case) -> dict:
        from segkit.io.writer import save_nifti

        reference, back = prepared.reference, prepared.reorientation.from_canonical
        chosen = {"mirror": (self.options.save_mirror, lambda: back(case.whole(case.mirror))),
                  "brain": (self.options.save_brain_mask, lambda: back(case.brain.astype(np.uint8)))}
        artifacts = {}
        for name, (wanted, array) in chosen.items():
            if wanted:
                artifacts[name] = lambda path, array=array: save_nifti(array(), reference.affine, path)
        return artifacts
