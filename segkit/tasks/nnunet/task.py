"""nnU-Net v2 tasks (SCIseg, models registered with install-task --custom-url, --model folders).

The base runner reads the channels (repeated -i, in channel order) and reorients them to the task
orientation (SCIseg: nibabel "LAS" == SCT "RPI"); the engine (segkit/engines/nnunet) predicts with
nnunetv2's own predictor, built once per process and model; the base runner then reorients back
and splits one binary mask per dataset.json label ("sc": [1, 2] -> values {1, 2}).

nnunetv2's predictor needs none of the nnUNet_* environment variables, so inference runs in
process; training (which needs them) runs in a child process, see segkit/engines/nnunet/_worker.py.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from segkit.engines.nnunet.model_folder import load_model_folder
from segkit.engines.nnunet.predictor import TILE_STEP_SIZE
from segkit.registry.schema import InputContract, LabelSpec, TaskSpec
from segkit.tasks.base import Inferred, Prepared, TaskRunner


def adhoc_spec(model_path: Path) -> TaskSpec:
    """A task for a trained nnU-Net folder given without -task: labels, channels and orientation from its json."""
    model = load_model_folder(Path(model_path).expanduser())
    return TaskSpec(
        name=f"model-dir:{Path(model_path).name}",
        description=f"trained nnU-Net v2 model {model.path}",
        citation="",
        framework="nnunetv2",
        weights_published=False,
        input=InputContract(modality="any", channels=tuple({"name": c} for c in model.channels),
                            orientation=model.orientation or "native", spacing="native"),
        labels=tuple(LabelSpec(lab.name, lab.values, lab.suffix) for lab in model.labels),
        files=(),
        weights_note="a trained nnU-Net v2 folder given with --model",
    )


class NnunetRunner(TaskRunner):
    """The model folder is looked for only when first needed (labels, model), so a registry task's
    inputs are checked before its weights: a wrong image is named even when the task is not installed."""

    keeps_integers = True  # the engine normalises a slab at a time (segkit.engines.nnunet.streaming)

    @cached_property
    def folder(self):
        return load_model_folder(self._model_root(), [str(f).strip() for f in self.options.folds] or None)

    # ------------------------------------------------------------------ model and labels

    def _model_root(self) -> Path:
        if self.options.model is not None:
            return Path(self.options.model).expanduser()
        from segkit.registry.store import require_installed

        installed = require_installed(self.spec)
        return installed.file_path(_primary_file(self.spec).name)

    def labels(self) -> tuple[LabelSpec, ...]:
        """dataset.json's labels, with the registry's suffix where the registry names the label."""
        suffixes = {lab.name: lab.suffix for lab in self.spec.labels}
        return tuple(LabelSpec(lab.name, lab.values, suffixes.get(lab.name, lab.suffix)) for lab in self.folder.labels)

    def channel_names(self) -> list[str]:
        """A registry task's channels from its entry (no weights needed); a --model folder's from its json."""
        if self.options.model is None and self.spec.input.channels:
            return super().channel_names()
        return list(self.folder.channels)

    def model_key(self) -> tuple:
        from segkit.runtime.device import resolve_device

        return (str(self.folder.path), self._checkpoints_sha256(), self.folder.folds, self.options.tta,
                resolve_device(self.common.device), self.options.backend)

    def _checkpoints_sha256(self) -> tuple[str, ...]:
        from segkit.registry.fetch import sha256_cached

        return tuple(sha256_cached(path) for path in self.folder.checkpoint_paths)

    def load_model(self):
        from segkit.engines.nnunet.predictor import build_predictor

        return build_predictor(self.folder, self.common.device, self.options.tta, self.options.backend)

    def provenance(self) -> dict:
        return {
            "framework": "nnunetv2",
            "model_dir": str(self.folder.path),
            "folds": list(self.folder.folds),
            "checkpoint": self.folder.checkpoint,
            "tta": bool(self.options.tta),
            "orientation": self.orientation(),
            "tile_step_size": TILE_STEP_SIZE,
            **self._install_facts(),
        }

    def _install_facts(self) -> dict:
        if self.options.model is not None or not self.spec.files:
            return {}
        from segkit.registry.store import installed_task

        installed = installed_task(self.spec.name)
        if installed is None:
            return {}
        entry = next((f for f in installed.manifest["files"] if f["name"] == _primary_file(self.spec).name), None)
        return {"model_url": entry["url"], "model_sha256": entry["sha256"]} if entry else {}

    # ------------------------------------------------------------------ inference

    def infer(self, predictor, prepared: Prepared, progress) -> Inferred:
        from segkit.engines.nnunet.predictor import network_backend, predict_label_map

        affine = prepared.reorientation.canonical_affine if prepared.reorientation else prepared.reference.affine
        return Inferred(predict_label_map(predictor, prepared.arrays, affine), {"backend": network_backend(predictor)})


def _primary_file(spec):
    for file in spec.files:
        if file.role == "model":
            return file
    return spec.files[0]


def plain_dataset_spec() -> TaskSpec:
    """What `segkit train --data DATASET` without -task trains: a plain nnU-Net v2 dataset."""
    return TaskSpec(
        name="nnunet", description="a plain nnU-Net v2 dataset", citation="", framework="nnunetv2",
        weights_published=False, input=InputContract("any", ({"name": "image"},), "native", "native"),
        labels=(), files=(), weights_note="trained with `segkit train --data DATASET`",
    )
