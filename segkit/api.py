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
    # cc_fodf (diffusion): FSL gradient files and brain mask of a DWI input, keep the peaks,
    # and a trained model package folder for tasks whose authors published no weights
    bval: Path | None = None
    bvec: Path | None = None
    mask: Path | None = None
    save_peaks: bool = False
    model: Path | None = None
    # nnU-Net v2 tasks (segkit.tasks.nnunet)
    folds: list[str] = field(default_factory=list)  # empty: every fold found
    tta: bool = False  # test-time mirroring (the main CPU cost)
    largest: bool = False
    fill_holes: bool = False
    remove_small: str | None = None  # "5mm3" or "5vox"
    model_dir: Path | None = None  # a trained nnU-Net folder, bypassing the registry
    # lpm_nnsam2 few-shot: a support image and its mask with one (or a few) annotated slices
    support: Path | None = None
    support_mask: Path | None = None
    propagator: str = "sam2"  # sam2 | litemedsam


def segment(request: SegmentRequest) -> list[Path]:
    """Run `request.task` and return the paths written (masks, sidecars, QC images)."""
    from segkit.registry.schema import load_registry
    from segkit.tasks.base import runner_for

    if request.model_dir is not None:
        return _segment_model_dir(request)
    spec = load_registry().get(request.task)
    # nnsam2's few-shot pseudo-labelling needs no trained model, only the propagator's weights
    fewshot = spec.framework == "nnsam2" and request.model is None
    if not spec.weights_published and request.model is None and not fewshot and not _has_registered_model(spec.name):
        from segkit.tasks.base import RUNNERS

        how = (
            f" Then pass --model MODEL_DIR, or register the model zip with "
            f"`segkit install-task {spec.name} --custom-url file:///path/to/model.zip`."
            if spec.framework in RUNNERS
            else ""
        )
        raise SegkitError(
            f"task '{spec.name}' has no pretrained weights published by its authors, so segkit will not "
            f"produce an untrained mask: {spec.weights_note}{how}"
        )
    if request.model is not None and spec.weights_published:
        raise SegkitError(f"--model applies to tasks trained with segkit (cc_fodf, ...); task '{spec.name}' uses its registry model")
    runner = runner_for(spec)
    if hasattr(runner, "predict_all"):  # one output set per -i target (lpm_nnsam2)
        return _segment_each_target(runner, request, spec.name)
    started = time.perf_counter()
    with _slice_progress(spec.name) as progress:
        prediction = runner.predict(request, progress)
    runtime = time.perf_counter() - started
    extra = [Path(p) for p in prediction.info.pop("extra_outputs", [])]  # e.g. --save-peaks, already written
    return write_prediction(prediction, request, spec.name, runtime) + extra


def _segment_each_target(runner, request: SegmentRequest, task: str) -> list[Path]:
    """Every target is predicted before anything is written, then each gets its own outputs."""
    from dataclasses import replace

    if len(request.inputs) > 1 and request.output is not None and str(request.output).endswith((".nii", ".nii.gz")):
        raise SegkitError(f"{len(request.inputs)} targets write several files each: give -o a folder, not {request.output}")
    started = time.perf_counter()
    with _slice_progress(task) as progress:
        predictions = runner.predict_all(request, progress)
    runtime = (time.perf_counter() - started) / max(1, len(predictions))
    written: list[Path] = []
    for prediction in predictions:
        one = replace(request, inputs=[Path(prediction.reference.path)])
        tables = prediction.info.pop("side_tables", {})
        written += write_prediction(prediction, one, task, runtime)
        written += _write_side_tables(tables, one, len(prediction.outputs))
    return written


def _write_side_tables(tables: dict, request: SegmentRequest, n_outputs: int) -> list[Path]:
    """Tables that belong beside the masks (e.g. lpm_nnsam2's per-slice IoU), named <stem><suffix>."""
    from segkit.io.writer import atomic_write_text, output_path_for, output_stem

    written = []
    source = Path(request.inputs[0])
    for suffix, text in tables.items():
        folder = output_path_for(source, "", _output_for(request, n_outputs)).parent
        path = folder / f"{output_stem(source)}{suffix}"
        _refuse_input_overwrite(path, request.inputs)
        atomic_write_text(path, text)
        written.append(path)
    return written


def _has_registered_model(task: str) -> bool:
    """A user-trained model registered with `install-task TASK --custom-url` counts as weights."""
    from segkit.registry.store import is_installed

    return is_installed(task)


def _segment_model_dir(request: SegmentRequest) -> list[Path]:
    """`segment --model-dir DIR`: run a trained nnU-Net folder directly; labels and channels from its json."""
    from segkit.registry.schema import load_registry
    from segkit.tasks.nnunet.task import NnunetTask

    # with -task too, the registry entry supplies orientation and output suffixes
    spec = load_registry().get(request.task) if request.task else None
    if spec is not None and spec.framework != "nnunetv2":
        raise SegkitError(f"--model-dir runs nnU-Net v2 models; task '{spec.name}' is a {spec.framework} task")
    runner = NnunetTask(spec, model_dir=request.model_dir)
    started = time.perf_counter()
    prediction = runner.predict(request, None)
    name = request.task or f"model-dir:{Path(request.model_dir).name}"
    return write_prediction(prediction, request, name, time.perf_counter() - started)


def write_prediction(prediction, request: SegmentRequest, task: str, runtime_s: float) -> list[Path]:
    """Write every output mask and its sidecar (and QC), after checking no path hits an input."""
    from segkit.io.writer import atomic_write_text, output_path_for, save_label_map

    source = Path(request.inputs[0])
    planned = [(out, output_path_for(source, out.suffix, _output_for(request, len(prediction.outputs)))) for out in prediction.outputs]
    for _, path in planned:
        _refuse_input_overwrite(path, request.inputs)
    written: list[Path] = []
    for out, path in planned:
        written.append(save_label_map(out.mask, prediction.reference, path))
        sidecar = {
            "tool": "segkit",
            "segkit_version": __version__,
            "task": task,
            "label": {"name": out.name, "value": out.value, "suffix": out.suffix},
            "inputs": [str(Path(p).resolve()) for p in request.inputs],
            "output": str(path.resolve()),
            "runtime_s": round(runtime_s, 3),
            "command_line": request.command_line,
            **prediction.info,
        }
        sidecar_path = _sidecar_path(path)
        atomic_write_text(sidecar_path, json.dumps(sidecar, indent=2, default=_json_default) + "\n")
        written.append(sidecar_path)
        if request.qc_dir is not None:
            from segkit.qc.overlay import write_qc_pngs

            stem = _sidecar_path(path).stem
            written.extend(write_qc_pngs(prediction.reference.data, out.mask, Path(request.qc_dir), stem))
    return written


def _output_for(request: SegmentRequest, n_outputs: int) -> Path | None:
    """-o names a file only when there is one output; with several it must be a folder."""
    out = request.output
    if out is not None and n_outputs > 1 and str(out).endswith((".nii", ".nii.gz")):
        raise SegkitError(f"this task writes {n_outputs} files: give -o a folder, not {out}")
    return out


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
