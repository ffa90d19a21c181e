"""segkit's Python API: what the CLI wraps. Each function validates all inputs before any compute
and writes nothing until the result is complete (masks, then sidecar, then QC)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from segkit import __version__
from segkit.errors import SegkitError


@dataclass
class SegmentRequest:
    inputs: list[Path]
    task: str
    output: Path | None = None
    boxes: list[str] = field(default_factory=list)
    boxes_mm: list[str] = field(default_factory=list)
    prompt_mask: Path | None = None
    slice_index: int | None = None
    axis: int = 2
    qc_dir: Path | None = None
    device: str = "auto"
    backend: str = "auto"
    command_line: str = ""


def segment(request: SegmentRequest) -> list[Path]:
    """Run `request.task` and return the paths written (masks and sidecars)."""
    from segkit.registry.schema import load_registry

    spec = load_registry().get(request.task)
    if not spec.weights_published:
        raise SegkitError(
            f"task '{spec.name}' has no pretrained weights published by its authors, so segkit will not "
            f"produce an untrained mask: {spec.weights_note}"
        )
    if spec.framework == "litemedsam":
        return _segment_medsam(request, spec)
    from segkit.registry.store import require_installed

    require_installed(spec)
    raise SegkitError(f"task '{spec.name}' (framework {spec.framework}) cannot be run by this segkit version yet")


def _single_input(request: SegmentRequest) -> Path:
    if len(request.inputs) != 1:
        raise SegkitError(f"task '{request.task}' takes exactly one -i image, got {len(request.inputs)}")
    return request.inputs[0]


def _segment_medsam(request: SegmentRequest, spec) -> list[Path]:
    from segkit.io.image import load_image
    from segkit.io.writer import atomic_write_text, output_path_for, save_label_map
    from segkit.registry.store import RichProgress, ensure_offline_task
    from segkit.tasks.medsam.prompts import collect_boxes

    source = _single_input(request)
    image = load_image(source, allowed_ndim=(2, 3))
    boxes = collect_boxes(
        image,
        boxes=request.boxes,
        boxes_mm=request.boxes_mm,
        prompt_mask=request.prompt_mask,
        slice_index=request.slice_index,
        axis=request.axis,
    )
    label = spec.labels[0]
    out_path = output_path_for(source, label.suffix, request.output)
    _refuse_input_overwrite(out_path, request.inputs)

    installed = ensure_offline_task(spec, progress=RichProgress())
    weights_name = spec.files[0].name
    weights = installed.file_path(weights_name)

    from segkit.tasks.medsam.runner import segment_medsam

    started = time.perf_counter()
    with _slice_progress("medsam") as progress:
        result = segment_medsam(
            image.data, boxes, weights, slice_axis=request.axis, device=request.device,
            backend=request.backend, progress=progress,
        )
    runtime = time.perf_counter() - started

    written = [save_label_map(result.mask, image, out_path)]
    sidecar = {
        "tool": "segkit",
        "segkit_version": __version__,
        "task": spec.name,
        "model": {"name": weights_name, "sha256": installed.sha256(weights_name), "url": _manifest_url(installed, weights_name)},
        "input": str(Path(source).resolve()),
        "output": str(out_path.resolve()),
        "label": {"name": label.name, "value": 1},
        "prompts": [_box_record(b) for b in boxes],
        "runtime_s": round(runtime, 3),
        "command_line": request.command_line,
        **{k: v for k, v in result.info.items() if k not in ("prompts",)},
    }
    sidecar_path = _sidecar_path(out_path)
    atomic_write_text(sidecar_path, json.dumps(sidecar, indent=2, default=_json_default) + "\n")
    written.append(sidecar_path)
    if request.qc_dir is not None:
        from segkit.qc.overlay import write_qc_pngs

        stem = out_path.name.removesuffix(".nii.gz").removesuffix(".nii")
        written.extend(write_qc_pngs(image.data, result.mask, Path(request.qc_dir), stem))
    return written


def _manifest_url(installed, name: str) -> str:
    return next(f["url"] for f in installed.manifest["files"] if f["name"] == name)


def _box_record(box) -> dict:
    if hasattr(box, "to_dict"):
        return box.to_dict()
    return {"box": list(box)}


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _sidecar_path(mask_path: Path) -> Path:
    name = mask_path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return mask_path.with_name(name[: -len(ext)] + ".json")
    return mask_path.with_name(name + ".json")


def _refuse_input_overwrite(out_path: Path, inputs: list[Path]) -> None:
    target = Path(out_path).resolve()
    for source in inputs:
        if Path(source).resolve() == target:
            raise SegkitError(f"output {out_path} would overwrite the input; choose another -o")


class _slice_progress:
    """A rich bar of slices on stderr, shown only when stderr is a terminal."""

    def __init__(self, label: str):
        self.label = label
        self._progress = None
        self._task = None

    def __enter__(self):
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        )
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
