"""SAM 2.1 video propagation (`--propagator sam2`) recording each frame's predicted IoU per object.

The interleaved support/target frames are SAM2's 'video'; every seed frame gets one mask prompt
per side; the predictor propagates forward from the first seed, then backward from it for the
frames before. Masks are logits > 0 with overlaps resolved by argmax (METHODS: nnSAM2).

sam2's SAM2VideoPredictor does not return the IoU head's output. `RecordingVideoPredictor`
subclasses it (no fork) and hooks two private methods of sam2 == 1.1.0:

- `SAM2Base._track_step(...)` returns `(current_out, sam_outputs, high_res_features, pix_feat)`
  where `sam_outputs[2]` is the IoU head's `ious` tensor, shape (batch, n_masks);
- `SAM2VideoPredictor._run_single_frame_inference(inference_state, output_dict, frame_idx, ...)`
  runs one object's frame; `output_dict` is that object's entry of
  `inference_state["output_dict_per_obj"]`, which tells which object it is.

tests/test_lpm_sam2.py checks both signatures and fails loudly if a sam2 release moves them.
With multimask output SAM2 keeps the mask with the highest predicted IoU, so the recorded value is
the maximum over masks. Mask-prompted (seed) frames count as 1.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from segkit.errors import TaskNotInstalledError
from segkit.tasks.lpm_nnsam2.labels import lpm_labels
from segkit.tasks.lpm_nnsam2.propagation import Propagation, labels_from_logits
from segkit.tasks.lpm_nnsam2.sequence import interleave

SAM2_VERSION = "1.1.0"  # the hook points above were read in this release
IOU_KEY = "segkit_ious"


def _recording_class():
    """Defined on first use so importing this module does not import torch or sam2."""
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    class RecordingVideoPredictor(SAM2VideoPredictor):
        def _track_step(self, *args, **kwargs):
            result = super()._track_step(*args, **kwargs)
            sam_outputs = result[1]
            self._segkit_last_ious = sam_outputs[2]
            return result

        def _run_single_frame_inference(self, inference_state, output_dict, frame_idx, *args, **kwargs):
            self._segkit_last_ious = None
            result = super()._run_single_frame_inference(inference_state, output_dict, frame_idx, *args, **kwargs)
            ious = self._segkit_last_ious
            if ious is not None:
                record = inference_state.setdefault(IOU_KEY, {})
                for obj_idx, obj_dict in inference_state["output_dict_per_obj"].items():
                    if obj_dict is output_dict:
                        obj_id = inference_state["obj_idx_to_id"][obj_idx]
                        record[(int(frame_idx), obj_id)] = float(ious.float().max(dim=-1).values.reshape(-1)[0])
            return result

    return RecordingVideoPredictor


def recording_predictor_target() -> str:
    cls = _recording_class()
    globals()["RecordingVideoPredictor"] = cls  # hydra instantiates by dotted path
    return f"{__name__}.RecordingVideoPredictor"


def build_recording_predictor(config_file: str, checkpoint: Path | str | None, device: str = "cpu", overrides=()):
    """SAM2's own builder with the recording subclass as the model target."""
    from sam2.build_sam import build_sam2_video_predictor

    target = recording_predictor_target()
    extra = [f"++model._target_={target}", *overrides]
    return build_sam2_video_predictor(
        config_file, str(checkpoint) if checkpoint else None, device=device, hydra_overrides_extra=extra,
        apply_postprocessing=False,  # its hole filling needs sam2's optional CUDA extension
    )


def installed_sam2_checkpoint(spec) -> tuple[Path, str]:
    """(checkpoint, sam2 config) of the task's installed SAM2 file; one clear line when missing."""
    from segkit.models.sam import sam2_configs
    from segkit.registry.store import installed_task

    configs = sam2_configs()
    backbones = [f for f in spec.files if f.name in configs]
    installed = installed_task(spec.name)
    if installed is not None:
        for file in backbones:
            try:
                path = installed.file_path(file.name)
            except Exception:  # noqa: BLE001 - a manifest without this file: try the next size
                continue
            if Path(path).is_file():
                return Path(path), configs[file.name]
    names = ", ".join(f.name for f in backbones) or "a SAM 2.1 checkpoint"
    raise TaskNotInstalledError(
        f"the SAM2 weights of lpm_nnsam2 ({names}) are not installed: run `segkit install-task lpm_nnsam2` "
        f"where the internet is reachable, or use --propagator litemedsam (offline, embedded weights)"
    )


class Sam2Propagator:
    name = "sam2"

    def __init__(self, predictor, device: str = "cpu"):
        self.predictor = predictor
        self.device = device

    @classmethod
    def from_checkpoint(cls, checkpoint, config_file: str, device: str = "auto"):
        from segkit.runtime.device import resolve_device

        from segkit.models.sam import load_state_dict

        device = resolve_device(device)
        predictor = build_recording_predictor(config_file, None, device)
        # the verified checkpoint is read here (weights_only), not handed to sam2's loader
        predictor.load_state_dict(load_state_dict("sam2.1_hiera_tiny", checkpoint), strict=True)
        return cls(predictor.eval(), device)

    def propagate(
        self,
        support_labels: np.ndarray,
        seed_slices: list[int],
        target_frames: np.ndarray,
        object_ids=None,
        n_support_slices: int | None = None,
        progress: Callable[[], None] | None = None,
        support_frames: np.ndarray | None = None,
    ) -> Propagation:
        object_ids = object_ids or lpm_labels()
        import torch

        if support_frames is None:
            raise ValueError("the SAM2 propagator needs the support frames (mask prompts sit on them)")
        n_target = target_frames.shape[0]
        sequence = interleave(seed_slices, n_support_slices or support_labels.shape[0], n_target)
        frames = [support_frames[f.slice] if f.is_support else target_frames[f.slice] for f in sequence]
        seeds = [i for i, f in enumerate(sequence) if f.is_support]
        logits = {}
        with tempfile.TemporaryDirectory(prefix="segkit-sam2-") as folder, torch.inference_mode():
            _write_jpeg_frames(frames, Path(folder))
            state = self.predictor.init_state(video_path=folder, offload_video_to_cpu=True)
            for position in seeds:
                seed_labels = support_labels[sequence[position].slice]
                for obj in object_ids:
                    self.predictor.add_new_mask(state, frame_idx=position, obj_id=obj, mask=seed_labels == obj)
            for reverse in (False, True):
                for idx, obj_ids, masks in self.predictor.propagate_in_video(state, start_frame_idx=seeds[0], reverse=reverse):
                    if reverse and idx >= seeds[0]:
                        continue  # the forward pass already covered the frames from the first seed on
                    order = [list(obj_ids).index(obj) for obj in object_ids]
                    logits[idx] = masks[order, 0].float().cpu().numpy()
                    if progress is not None and not sequence[idx].is_support:
                        progress()
            recorded = dict(state.get(IOU_KEY, {}))
        return self._collect(sequence, logits, recorded, object_ids, target_frames.shape)

    def _collect(self, sequence, logits, recorded, object_ids, shape) -> Propagation:
        labels = np.zeros(shape, dtype=np.uint8)
        scores = np.zeros((shape[0], len(object_ids)), dtype=np.float32)
        sequence_scores = {}
        for position, frame in enumerate(sequence):
            for j, obj in enumerate(object_ids):
                value = 1.0 if frame.is_support else float(recorded.get((position, obj), 0.0))
                sequence_scores[(position, obj)] = value
                if not frame.is_support:
                    scores[frame.slice, j] = value
            if not frame.is_support and position in logits:
                labels[frame.slice] = labels_from_logits(logits[position], object_ids)
        return Propagation(labels, scores, sequence, self.name, sequence_scores, {"device": self.device})


def _write_jpeg_frames(frames, folder: Path) -> None:
    """SAM2's video loader reads a folder of <index>.jpg files (nnSAM2 also exports JPGs)."""
    from PIL import Image

    for index, frame in enumerate(frames):
        Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("RGB").save(folder / f"{index:05d}.jpg", quality=95)
