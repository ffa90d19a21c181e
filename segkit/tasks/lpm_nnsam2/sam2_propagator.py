"""SAM 2.1 video propagation (`--propagator sam2`) recording each frame's predicted IoU per object.

The support and target frames alternate in SAM2's 'video' as upstream interleaves them (support,
target, support, target, ...), every support frame mask-prompted. The support frames are the
support image registered onto each target slice and the prompts the registered annotation
(align.py), so memory is conditioned on the right place. Masks are logits > 0 with overlaps
resolved by argmax (METHODS: nnSAM2).

sam2's SAM2VideoPredictor does not return the IoU head's output. `RecordingVideoPredictor`
subclasses it (no fork) and hooks two private methods of sam2 == 1.1.0:

- `SAM2Base._track_step(...)` returns `(current_out, sam_outputs, high_res_features, pix_feat)`
  where `sam_outputs[2]` is the IoU head's `ious` tensor, shape (batch, n_masks);
- `SAM2VideoPredictor._run_single_frame_inference(inference_state, output_dict, frame_idx, ...)`
  runs one object's frame; `output_dict` is that object's entry of
  `inference_state["output_dict_per_obj"]`, which tells which object it is.

tests/test_lpm_sam2.py checks both signatures and fails loudly if a sam2 release moves them.
With the ONNX backend the subclass's `forward_image` (public, called once per frame) returns the
image features from segkit.models.encoders.Sam2OnnxEncoder instead of the torch image encoder.

sam2 keeps the image features of one frame only, and before tracking it consolidates each object's
mask-prompted frames one object after the other, so every support frame went through the image
encoder three times (prompted, then once per object), and the encoder ran 4 times per target
slice. The subclass also overrides `SAM2VideoPredictor._get_image_feature(inference_state,
frame_idx, batch_size)`, which reads and writes `inference_state["cached_features"]` as
{frame_idx: (image, backbone_out)}: the features of frames encoded while prompts are added are
kept and handed back to it, so each frame is encoded once (2 calls per target slice). The
positional encodings are the same for every frame and are kept once.
With multimask output SAM2 keeps the mask with the highest predicted IoU, so the recorded value is
the maximum over masks. Mask-prompted (seed) frames count as 1.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from segkit.errors import SegkitError, TaskNotInstalledError
from segkit.tasks.lpm_nnsam2.labels import lpm_labels
from segkit.tasks.lpm_nnsam2.propagation import Propagation, labels_from_logits
from segkit.tasks.lpm_nnsam2.sequence import SUPPORT, TARGET, SequenceFrame

SAM2_VERSION = "1.1.0"  # the hook points above were read in this release
IOU_KEY = "segkit_ious"
KEPT_FEATURES_KEY = "segkit_kept_features"  # frame -> sam2's (image, backbone_out), while prompts are added
KEEPING_KEY = "segkit_keeping_features"


def _recording_class():
    """Defined on first use so importing this module does not import torch or sam2."""
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    class RecordingVideoPredictor(SAM2VideoPredictor):
        segkit_image_features = None  # segkit.models.encoders.Sam2OnnxEncoder, or None: sam2's own torch path

        def forward_image(self, img_batch):
            if self.segkit_image_features is None:
                return super().forward_image(img_batch)
            return self.segkit_image_features(img_batch)

        def _track_step(self, *args, **kwargs):
            result = super()._track_step(*args, **kwargs)
            sam_outputs = result[1]
            self._segkit_last_ious = sam_outputs[2]
            return result

        def _get_image_feature(self, inference_state, frame_idx, batch_size):
            kept = inference_state.setdefault(KEPT_FEATURES_KEY, {})
            if frame_idx in kept:
                inference_state["cached_features"] = {frame_idx: kept[frame_idx]}
            result = super()._get_image_feature(inference_state, frame_idx, batch_size)
            if inference_state.get(KEEPING_KEY) and frame_idx not in kept:
                kept[frame_idx] = _positions_shared(inference_state["cached_features"][frame_idx], kept)
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


def _positions_shared(entry, kept: dict):
    """sam2's (image, backbone_out) with the positional encodings of the first kept frame (equal for
    every frame of a video: 67 MB at 1024 px that need not be kept per frame)."""
    image, backbone_out = entry
    if kept:
        first = next(iter(kept.values()))[1]
        backbone_out = {**backbone_out, "vision_pos_enc": first["vision_pos_enc"]}
    return image, backbone_out


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

    @property
    def backend(self) -> str:
        return "torch" if self.predictor.segkit_image_features is None else "onnx"

    @classmethod
    def from_checkpoint(cls, checkpoint, config_file: str, device: str = "auto", backend: str = "auto", overrides=()):
        from segkit.models.encoders import default_onnx_cache_dir, onnx_image_features
        from segkit.models.sam import load_state_dict
        from segkit.registry.fetch import sha256_cached
        from segkit.runtime.device import resolve_device
        from segkit.runtime.onnx_backend import choose_backend

        device = resolve_device(device)
        predictor = build_recording_predictor(config_file, None, device, overrides)
        # the verified checkpoint is read here (weights_only), not handed to sam2's loader
        state = load_state_dict("sam2.1_hiera_tiny", checkpoint)
        try:
            predictor.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise SegkitError(_mismatch(checkpoint, config_file, state, predictor, exc)) from None
        predictor.eval()
        if choose_backend(backend, device) == "onnx":
            onnx_image_features(predictor, Path(checkpoint).stem, sha256_cached(checkpoint),
                                default_onnx_cache_dir(checkpoint), device, backend)
        return cls(predictor, device)

    def propagate(self, target_frames: np.ndarray, alignment, object_ids=None,
                  progress: Callable[[], None] | None = None) -> Propagation:
        """Upstream's interleaving, on aligned frames: before every target frame, the support image
        registered onto it (align.py), mask-prompted with the registered annotation."""
        object_ids = object_ids or lpm_labels()
        import torch

        n_target = target_frames.shape[0]
        sequence = [frame for t in range(n_target) for frame in (SequenceFrame(SUPPORT, t), SequenceFrame(TARGET, t))]
        frames = [alignment.support_frames[f.slice] if f.is_support else target_frames[f.slice] for f in sequence]
        logits = {}
        with tempfile.TemporaryDirectory(prefix="segkit-sam2-") as folder, torch.inference_mode():
            _write_jpeg_frames(frames, Path(folder))
            state = self.predictor.init_state(video_path=folder, offload_video_to_cpu=True)
            state[KEEPING_KEY] = True  # the prompted frames' features serve again when sam2 consolidates them
            for position, frame in enumerate(sequence):
                if frame.is_support:
                    for obj in object_ids:
                        mask = alignment.reference[frame.slice] == obj
                        self.predictor.add_new_mask(state, frame_idx=position, obj_id=obj, mask=mask)
            state[KEEPING_KEY] = False  # target frames are encoded once anyway
            for idx, obj_ids, masks in self.predictor.propagate_in_video(state, start_frame_idx=0):
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
        return Propagation(labels, scores, sequence, self.name, sequence_scores,
                           {"device": self.device, "backend": self.backend})


def _mismatch(checkpoint, config_file: str, state, predictor, exc: Exception) -> str:
    """One line naming what was found: a checkpoint of another SAM 2.1 size, or not SAM 2.1 at all."""
    expected = sum(v.numel() for v in predictor.state_dict().values())
    tensors = [v for v in state.values() if hasattr(v, "numel")] if isinstance(state, dict) else []
    found = sum(v.numel() for v in tensors)
    known = {m.config: m.file for m in _sam2_members()}
    return (f"{checkpoint}: not the SAM 2.1 checkpoint {known.get(config_file, config_file)} this task's registry "
            f"names: it holds {found / 1e6:.1f} M parameters in {len(tensors)} tensors, the model built from "
            f"{config_file} has {expected / 1e6:.1f} M ({_first_detail(exc)}); install the "
            f"registry's file (`segkit install-task lpm_nnsam2`) or use --propagator litemedsam")


def _first_detail(exc: Exception) -> str:
    """torch's first line says only 'Error(s) in loading state_dict'; the next names the keys."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__)[:120]


def _sam2_members():
    from segkit.models.sam import SAM_FAMILY

    return [m for m in SAM_FAMILY.values() if m.kind == "sam2"]


def _write_jpeg_frames(frames, folder: Path) -> None:
    """SAM2's video loader reads a folder of <index>.jpg files (nnSAM2 also exports JPGs)."""
    from PIL import Image

    for index, frame in enumerate(frames):
        Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("RGB").save(folder / f"{index:05d}.jpg", quality=95)
