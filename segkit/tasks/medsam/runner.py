"""`segment_medsam`: LiteMedSAM on an array with box prompts; what `segkit segment -task medsam` calls."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from segkit.errors import ImageError, PromptError
from segkit.tasks.medsam.prompts import Box, check_box_inside


@dataclass
class MedsamResult:
    mask: np.ndarray  # uint8 {0,1}, exactly image_array.shape: the union of every box's mask
    info: dict = field(default_factory=dict)


def segment_medsam(
    image_array: np.ndarray,
    boxes: Sequence[Box | Sequence[int]],
    weights_path: Path | str,
    *,
    slice_axis: int = 2,
    device: str = "auto",
    backend: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    onnx_cache_dir: Path | str | None = None,
) -> MedsamResult:
    """Segment `image_array` (2D, or 3D sliced along slice_axis) inside each box; union the masks.

    Boxes are `Box` objects or corner sequences (i0, j0[, k0], i1, j1[, k1]), inclusive voxel
    indices in the array's order. `progress(done, total)` is called once per slice segmented.
    """
    from segkit.runtime.device import resolve_device

    image = _checked_image(image_array)
    boxes = _checked_boxes(boxes, image.shape)
    if image.ndim == 3 and slice_axis not in (0, 1, 2):
        raise PromptError(f"--axis {slice_axis}: must be 0, 1 or 2")
    torch_device = resolve_device(device)
    net, encoder = loaded_model(weights_path, torch_device, backend, onnx_cache_dir)
    return segment_with_model(net, encoder, image, boxes, slice_axis=slice_axis, device=torch_device, progress=progress)


def segment_with_model(net, encoder, image: np.ndarray, boxes: list[Box], *, slice_axis: int, device: str,
                       progress: Callable[[int, int], None] | None = None, window=None) -> MedsamResult:
    """`segment_medsam` with a loaded (network, encoder): the model-once path of batch runs; `window`
    (segkit.tasks.medsam.window.Window) clips each slice before LiteMedSAM's own scaling."""
    from segkit.models.prompt import PromptPredictor
    from segkit.tasks.medsam.preprocess import IMAGE_SIZE
    from segkit.tasks.medsam.propagate import EMBEDDING_CACHE_SLICES, SliceSegmenter, segment_box

    started = time.perf_counter()
    predictor = PromptPredictor(net, encoder, IMAGE_SIZE, EMBEDDING_CACHE_SLICES)  # one per image: keys are slices
    segmenter = SliceSegmenter(predictor, image, slice_axis, window)
    total = sum(_n_slices(b, image.ndim, slice_axis) for b in boxes)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    mask = np.zeros(image.shape, dtype=np.uint8)
    for box in boxes:
        segment_box(segmenter, box, mask, step)
    info = {
        "backend": encoder.name,
        "device": device,
        "onnx_providers": list(getattr(getattr(encoder, "module", None), "providers", []) or []),
        "slice_axis": slice_axis if image.ndim == 3 else None,
        "n_slices_segmented": total,
        "n_slices_encoded": predictor.n_encoded,
        "inference_s": round(time.perf_counter() - started, 3),
        "prompts": [b.to_dict() for b in boxes],
    }
    return MedsamResult(mask=mask, info=info)


def loaded_model(weights_path, device: str, backend: str, onnx_cache_dir=None):
    """(LiteMedSAM network, image encoder), kept for the next call in this process (segkit.models.sam)."""
    from segkit.models.sam import load_with_encoder

    return load_with_encoder("litemedsam", weights_path, device, backend, onnx_cache_dir)


def _checked_image(image_array):
    """The image as an ndarray, or a segkit.io.slab.StoredVolume as it is (integers: nothing to read)."""
    from segkit.io.slab import StoredVolume

    image = image_array if isinstance(image_array, StoredVolume) else np.asarray(image_array)
    if image.ndim not in (2, 3):
        raise ImageError(f"medsam segments 2D or 3D images; this one is {image.ndim}D with shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise ImageError(f"medsam needs a real-valued image, got dtype {image.dtype}")
    if not np.issubdtype(image.dtype, np.integer) and not np.all(np.isfinite(image)):
        raise ImageError("the image has NaN or infinite voxels; fix or mask them before segmenting")
    return image


def _checked_boxes(boxes, shape) -> list[Box]:
    if not boxes:
        raise PromptError("medsam needs at least one box prompt")
    checked = []
    for box in boxes:
        box = box if isinstance(box, Box) else Box.from_corners(box)
        checked.append(check_box_inside(box, shape, f"box {box.corners()}"))
    return checked


def _n_slices(box: Box, ndim: int, slice_axis: int) -> int:
    return 1 if ndim == 2 else box.hi[slice_axis] - box.lo[slice_axis] + 1
