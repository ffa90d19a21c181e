"""segkit's Python API: one function per command, which the CLI wraps and the examples use.

    segment(task, inputs, **options)   masks (+ sidecars, QC, side artifacts) for one or many cases
    train(task, **options)             a model package for tasks that can be trained
    evaluate(...) / quantify(...)      tables (lists of row dicts); see segkit.metrics / segkit.quantify
    eval_cohort_pairs / quantify_cohort_subjects   their inputs from a BIDS dataset or a glob
    install_task(task, ...)            verified model files in the cache

Every function checks its options against the task's declared options class and plans every
output path (refusing any that would overwrite a file the command reads) before any compute.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from segkit import __version__
from segkit.errors import SegkitError


# ------------------------------------------------------------------------------ tasks


def resolve_task(task: str | None, model: Path | str | None = None):
    """The registry entry for `task`; without a name, the task a trained --model records."""
    from segkit.registry.schema import load_registry

    if task:
        return load_registry().get(task)
    if model is None:
        raise SegkitError("Missing option '-task' (see `segkit list-tasks`), or give --model with a trained model")
    from segkit.training.package import task_of_model

    name = task_of_model(Path(model))
    if name is not None:
        return load_registry().get(name)
    from segkit.tasks.nnunet.task import adhoc_spec  # a plain nnU-Net folder: its own json describes it

    return adhoc_spec(Path(model))


def make_runner(task: str | None = None, *, inputs=(), output=None, qc=None, device: str = "auto",
                largest: bool = False, fill_holes: bool = False, remove_small: str | None = None,
                series: str | None = None, **task_options):
    """A task runner with its options checked (nothing read, nothing loaded): for batch use."""
    from segkit.postprocess import parse_min_size
    from segkit.tasks.catalog import load_target, not_runnable, segment_options_class
    from segkit.tasks.common_options import SegmentCommon
    from segkit.tasks.options import build_options

    spec = resolve_task(task, task_options.get("model"))
    common = build_options(SegmentCommon, "segment", dict(
        inputs=list(inputs), task=spec.name, output=output, qc=qc, device=device, largest=largest,
        fill_holes=fill_holes, remove_small=remove_small, series=series,
    ))
    parse_min_size(remove_small)
    options_class = segment_options_class(spec)
    if options_class is None:
        raise not_runnable(spec, "run")
    options = build_options(options_class, spec.name, task_options)
    return load_target(options_class.runner)(spec, options, common)


def segment(task: str | None = None, inputs=(), *, command_line: str = "",
            progress: Callable[[int, int], None] | None = None, **options) -> list[Path]:
    """Run `task` on each case in `inputs` and return every path written.

    `options` are the common ones (output, qc, device, largest, fill_holes, remove_small) and the
    task's own (see `segkit segment -task TASK --help`, or the task's options.py).
    """
    runner = make_runner(task, inputs=inputs, **options)
    cases = runner.cases(runner.common.inputs)
    runner.prepare_all(cases)  # every input checked before any weights are looked for (labels may need them)
    plans = [plan_outputs(runner, case, len(cases)) for case in cases]
    check_outputs([p for plan in plans for p in plan.paths()], files_read_by(runner),
                  [p for plan in plans for p in plan.qc_patterns()])
    written: list[Path] = []
    started = time.perf_counter()
    predictions = runner.predict_many(cases, progress)
    for plan in plans:  # not zip: zip frees its previous items only after producing the next ones
        prediction = next(predictions)
        runtime = time.perf_counter() - started
        written += write_prediction(prediction, plan, runner, runtime, command_line)
        del prediction  # its masks and input are freed before the next case is read and inferred
        started = time.perf_counter()
    return written


def files_read_by(runner) -> list[Path]:
    return [*runner.common.files_read(), *runner.options.files_read()]


# ------------------------------------------------------------------------------ output planning


class OutputPlan:
    """Where one case's outputs go, decided before any compute."""

    def __init__(self, masks: dict, artifacts: dict, qc_dir: Path | None):
        self.masks = masks  # label name -> mask path
        self.artifacts = artifacts  # artifact name -> path
        self.qc_dir = qc_dir

    def paths(self) -> list[Path]:
        return [*self.masks.values(), *(sidecar_path(p) for p in self.masks.values()), *self.artifacts.values()]

    def qc_patterns(self) -> list[Path]:
        """QC PNG names depend on the mask (its centre), so only their pattern is known beforehand."""
        if self.qc_dir is None:
            return []
        return [self.qc_dir / f"{sidecar_path(p).stem}_qc*.png" for p in self.masks.values()]


def plan_outputs(runner, case, n_cases: int) -> OutputPlan:
    from segkit.io.writer import output_path_for, output_stem

    labels = runner.labels()
    out = runner.common.output
    if out is not None and str(out).endswith((".nii", ".nii.gz")):
        if n_cases > 1:
            raise SegkitError(f"{n_cases} inputs write several files each: give -o a folder, not {out}")
        if len(labels) > 1:
            raise SegkitError(f"this task writes {len(labels)} files: give -o a folder, not {out}")
    masks = {lab.name: output_path_for(case.source, lab.suffix, out) for lab in labels}
    folder = output_path_for(case.source, "", out).parent
    stem = output_stem(case.source)
    artifacts = {a.name: folder / f"{stem}{a.suffix}{a.extension}" for a in runner.planned_artifacts()}
    return OutputPlan(masks, artifacts, None if runner.common.qc is None else Path(runner.common.qc))


def check_outputs(outputs: list[Path], inputs: list[Path], patterns: list[Path] = ()) -> None:
    """Every check an output path gets before compute: it spares the inputs and can be written."""
    check_outputs_spare_inputs(outputs, inputs, patterns)
    for folder in sorted({Path(p).parent for p in [*outputs, *patterns]}):
        check_writable_folder(folder)


def check_writable_folder(folder: Path) -> None:
    """Refuse a folder that cannot be created or written, by trying it: the nearest existing
    ancestor must be a folder that takes a new file (permission bits alone miss read-only mounts)."""
    import tempfile

    existing = Path(folder).expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SegkitError(f"output folder {folder}: {existing} is a file, not a folder; choose another -o")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".segkit-probe-"):
            pass
    except OSError as exc:
        raise SegkitError(f"output folder {folder}: cannot write in {existing} ({exc.strerror or exc}); choose another -o") from None


def check_outputs_spare_inputs(outputs: list[Path], inputs: list[Path], patterns: list[Path] = ()) -> None:
    """The one overwrite guard of every command: refuse any output path that is (after resolving
    links) a file the command reads, or any read file a pattern of not-yet-named outputs (QC PNGs,
    named after the mask) could match. A folder among `inputs` (a model, a DICOM series) protects
    every file in it."""
    import fnmatch

    read = _read_files(inputs)
    for out in outputs:
        if _same_file(Path(out), read):
            raise SegkitError(f"output {out} would overwrite an input of this command; choose another output path")
    for pattern in patterns:
        folder = Path(pattern).parent.resolve()
        for path in read:
            if path.parent == folder and fnmatch.fnmatch(path.name, Path(pattern).name):
                raise SegkitError(f"output {pattern} may overwrite {path}, an input of this command; choose another folder")
    if len(set(map(Path.resolve, map(Path, outputs)))) != len(outputs):
        raise SegkitError("two outputs of this command would have the same path; give each input its own name or -o")


def _read_files(inputs: list[Path]) -> dict:
    """Resolved path -> (st_dev, st_ino) of every file read (folders expanded), None when absent."""
    read: dict = {}
    for path in map(Path, inputs):
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        for file in files:
            try:
                stat = file.stat()
                read[file.resolve()] = (stat.st_dev, stat.st_ino)
            except OSError:
                read[file.resolve()] = None
    return read


def _same_file(out: Path, read: dict) -> bool:
    """Same resolved path, or the same inode (a hard link, or a path spelled through another mount)."""
    if out.resolve() in read:
        return True
    try:
        stat = out.stat()
    except OSError:
        return False
    return (stat.st_dev, stat.st_ino) in read.values()


# ------------------------------------------------------------------------------ writing


def write_prediction(prediction, plan: OutputPlan, runner, runtime_s: float, command_line: str) -> list[Path]:
    """Write each mask, its sidecar and QC, then the side artifacts: every file atomically."""
    from segkit.io.writer import atomic_write_json, save_label_map

    written: list[Path] = []
    for out in prediction.outputs:
        path = plan.masks[out.name]
        written.append(save_label_map(out.mask, prediction.reference, path))
        sidecar = {
            "tool": "segkit",
            "segkit_version": __version__,
            "task": runner.spec.name,
            "label": {"name": out.name, "value": out.value, "suffix": out.suffix},
            "inputs": [str(Path(p).resolve()) for p in prediction.case.inputs],
            "output": str(path.resolve()),
            "runtime_s": round(runtime_s, 3),
            "command_line": command_line,
            **prediction.info,
        }
        sidecar.update({f"{name}_file": str(p) for name, p in plan.artifacts.items()})
        atomic_write_json(sidecar_path(path), sidecar, default=_json_default)
        written.append(sidecar_path(path))
        if plan.qc_dir is not None:
            from segkit.qc.overlay import write_qc_pngs

            written += write_qc_pngs(prediction.reference.data, out.mask, plan.qc_dir, sidecar_path(path).stem)
    for name, path in plan.artifacts.items():
        prediction.artifacts[name](path)
        written.append(path)
    return written


def sidecar_path(mask_path: Path) -> Path:
    name = Path(mask_path).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return Path(mask_path).with_name(name[: -len(ext)] + ".json")
    return Path(mask_path).with_name(name + ".json")


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# ------------------------------------------------------------------------------ train


def train(task: str | None = None, *, say: Callable[[str], None] = lambda text: None, **options) -> dict:
    """Train a model for `task` (or a plain nnU-Net dataset without one); returns {name: path} written."""
    from segkit.tasks.catalog import load_target, not_runnable, train_options_class
    from segkit.tasks.common_options import TrainCommon
    from segkit.tasks.options import build_options

    spec = _train_spec(task)
    common_names = {"output", "epochs", "device", "resume", "seed"}
    common = build_options(TrainCommon, "train", {"task": task, **{k: v for k, v in options.items() if k in common_names}})
    options_class = train_options_class(spec)
    if options_class is None:
        raise not_runnable(spec, "trained")
    own = build_options(options_class, spec.name, {k: v for k, v in options.items() if k not in common_names})
    check_train_output(common.output, [*common.files_read(), *own.files_read()])
    return load_target(options_class.trainer)(spec if task else None, common, own, say)


def check_train_output(output: Path, read: list[Path]) -> None:
    """Training fills (and on a fresh start clears parts of) its output folder: that folder must not
    be, or lie inside, a file or folder the command reads (--data, --images, --support, ...)."""
    out = Path(output).expanduser().resolve()
    for path in read:
        source = Path(path).expanduser().resolve()
        if out == source or source in out.parents:
            raise SegkitError(f"-o {output} is, or lies inside, {path}, which training reads; "
                              "choose an output folder outside it")


def _train_spec(task: str | None):
    """The task to train; without one, a plain nnU-Net v2 dataset (segkit.tasks.nnunet's trainer)."""
    if task:
        return resolve_task(task)
    from segkit.tasks.nnunet.task import plain_dataset_spec

    return plain_dataset_spec()


# ------------------------------------------------------------------------------ eval, quantify, install


def evaluate(pairs, *, regions=None, metrics="all", tolerance_mm: float = 2.0, surface: str = "surfel",
             lesions: bool = False, resample_pred: bool = False) -> tuple[list[dict], list[dict]]:
    """(metric rows, lesion rows) for each (case, pred, ref) in `pairs`; case may be None."""
    from segkit.metrics.evaluate import EvalError, EvalOptions, evaluate_files, parse_metrics

    if surface not in ("surfel", "voxel", "brats"):
        raise EvalError(f"--surface {surface!r}: choose surfel, voxel or brats")
    if not tolerance_mm >= 0:
        raise EvalError(f"--tolerance-mm {tolerance_mm}: must be >= 0")
    options = EvalOptions(parse_metrics(metrics), tolerance_mm, surface, lesions)
    rows, lesion_rows = [], []
    for case, pred, ref in pairs:
        case_rows, case_lesions = evaluate_files(pred, ref, regions, options, resample_pred)
        prefix = {"case": case} if case is not None else {}
        rows += [{**prefix, **row} for row in case_rows]
        lesion_rows += [{**prefix, **row} for row in case_lesions]
    return rows, lesion_rows


def eval_columns(metrics: str = "all", lesions: bool = False) -> list[str]:
    """The metric columns `evaluate` fills for these options, in table order."""
    from segkit.metrics.evaluate import EvalOptions, parse_metrics

    return EvalOptions(parse_metrics(metrics), 2.0, "surfel", lesions).metric_columns()


def quantify(subjects, measures) -> list[dict]:
    """Rows of numbers for each segkit.quantify.subjects.Subject under the given Measures."""
    from segkit.quantify.subjects import quantify_subject

    return [row for subject in subjects for row in quantify_subject(subject, measures)]


def eval_cohort_pairs(*, bids=None, glob: str | None = None, ref_dir=None, participant_label=(), session=(),
                      datatype: str = "anat", seg_suffix: str | None = None, ref_suffix: str | None = None,
                      seg_derivative: str | None = None, ref_derivative: str | None = None) -> list[tuple]:
    """(case, pred, ref) for `evaluate`: segkit's masks in a BIDS dataset's derivatives paired with its
    reference labels, or the predictions a glob matches paired with `ref_dir` (segkit.cohort.derivatives)."""
    from segkit.cohort import derivatives

    if bids is not None:
        selection = derivatives.selection(bids, participant_label, session, datatype)
        return derivatives.eval_pairs_bids(selection, seg_suffix, ref_suffix, seg_derivative, ref_derivative)
    return derivatives.eval_pairs_glob(glob, ref_dir, seg_suffix, ref_suffix)


def quantify_cohort_subjects(*, bids=None, glob: str | None = None, participant_label=(), session=(),
                             datatype: str = "anat", seg_suffix: str | None = None, seg_derivative: str | None = None,
                             images: bool = False, fat_suffix: str | None = None, water_suffix: str | None = None,
                             ff_suffix: str | None = None, cord_suffix: str | None = None) -> list:
    """Subjects for `quantify`: segkit's masks in a BIDS dataset's derivatives (with `images`, the raw
    image each was made from; the Dixon images by their BIDS suffix; the cord mask by its segkit
    suffix), or the masks a glob matches (with `images`, the image their sidecar names)."""
    from segkit.cohort import derivatives
    from segkit.quantify.subjects import Subject

    if bids is not None:
        selection = derivatives.selection(bids, participant_label, session, datatype)
        raw = {role: suffix for role, suffix in (("fat", fat_suffix), ("water", water_suffix), ("ff", ff_suffix)) if suffix}
        rows = derivatives.masks_bids(selection, seg_suffix, seg_derivative, images, raw,
                                      {"cord": cord_suffix} if cord_suffix else None)
    else:
        rows = derivatives.masks_glob(glob, images)
    return [Subject(mask, image, name=name, **companions) for name, mask, image, companions in rows]


def install_task(task: str, *, custom_url: str | None = None, sha256: str | None = None, force: bool = False,
                 progress=None):
    """Fetch and verify a task's files (or register any nnU-Net zip under a new name with custom_url)."""
    import re

    from segkit.registry.schema import load_registry
    from segkit.registry.store import NullProgress, install_task as install

    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise SegkitError(f"--sha256 must be 64 hexadecimal digits, got '{sha256}'")
    progress = progress or NullProgress()
    registry = load_registry()
    if task not in registry.tasks and custom_url:
        from segkit.registry.local import install_local_task

        return install_local_task(task, custom_url, sha256, force=force, progress=progress)
    return install(registry.get(task), custom_url=custom_url, custom_sha256=sha256, force=force, progress=progress)
