"""`segkit train` for nnU-Net-framework tasks: validate, then fingerprint/plan/preprocess/train in a
child process (see `_worker.py` for why), then export a zip that `install-task --custom-url` and
`segment --model-dir` accept.

Workspace under the output folder MODEL_DIR:
    MODEL_DIR/nnunet/nnUNet_raw/DatasetNNN_Name -> the user's dataset (symlink, else a copy)
    MODEL_DIR/nnunet/nnUNet_preprocessed/, MODEL_DIR/nnunet/nnUNet_results/   nnU-Net's own folders
    MODEL_DIR/train.log                                                       everything nnU-Net printed
    MODEL_DIR/<Trainer__Plans__Config>.zip                                     the exported model
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from segkit.errors import SegkitError
from segkit.engines.nnunet.dataset import DatasetSummary, validate_dataset

CONFIGURATIONS = ("3d_fullres", "2d", "3d_lowres")
DEFAULT_DATASET_ID = 501
CV_FOLDS = 5  # nnU-Net splits the training cases 5 ways when --fold is a number
_DATASET_NAME = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9_\-]+)$")
EXPORTED_FILES = ("dataset.json", "plans.json", "dataset_fingerprint.json")
EXPORTED_FOLD_FILES = ("checkpoint_final.pth", "debug.json", "progress.png")


@dataclass
class TrainRequest:
    data: Path
    output: Path
    configuration: str = "3d_fullres"
    fold: str = "0"
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    val_iterations_per_epoch: int | None = None
    device: str = "auto"
    resume: bool = False
    seed: int | None = None  # seeds Python, NumPy and torch in the worker (nnU-Net seeds nothing)
    mirroring: bool = True  # False: nnSAM2's "no mirroring" (labels that name a side), see nnunet_trainer.py
    orientation: str | None = None  # recorded in the model's dataset.json as segkit_orientation
    unet_width: float | None = None  # scales the planned features per stage (None: 1.0, or a resumed run's own)
    threads: int | None = None  # torch and OpenMP threads of the worker (None: segkit.runtime.device.cpu_threads())
    extra_env: dict = field(default_factory=dict)
    # a task's own network inside nnU-Net (ais_ncct): "module:Class", a subclass of SegkitTrainer
    trainer: str | None = None
    # set in the planned configuration before preprocessing: {"configuration": {key: value}, "plans": {key: value}}
    plan_overrides: dict | None = None
    splits: list | None = None  # nnU-Net's splits_final.json ([{"train": [...], "val": [...]}]), else its 5 folds
    export: bool = True  # the nnU-Net model zip beside the model folder


@dataclass
class TrainResult:
    model_dir: Path
    zip_path: Path | None
    log_path: Path
    epochs_run: int
    last_epoch: dict


EventFn = Callable[[dict], None]


def train_task(spec, common, options, say) -> list[tuple]:
    """`segkit train` for nnU-Net v2 tasks (or, with spec None, a plain nnU-Net v2 dataset)."""
    from segkit.training.progress import EpochProgress, number

    if options.data is None:
        raise SegkitError("Missing option '--data' (an nnU-Net v2 dataset folder)")
    orientation = spec.input.orientation if spec is not None and spec.input.orientation != "native" else None
    request = TrainRequest(
        data=options.data, output=common.output, configuration=options.configuration, fold=options.fold,
        epochs=common.epochs, iterations_per_epoch=options.iterations_per_epoch,
        val_iterations_per_epoch=options.val_iterations_per_epoch, device=common.device, resume=common.resume,
        mirroring=options.mirroring, seed=common.seed, orientation=orientation, unet_width=options.unet_width,
    )

    def stats(event: dict) -> str:
        return f"loss {number(event.get('train_loss'))}  pseudo-Dice {number(event.get('pseudo_dice'))}"

    with EpochProgress("nnU-Net", stats) as progress:
        result = train(request, on_event=progress.on_event)
    return [("model", result.model_dir), ("zip", result.zip_path)]


def train(request: TrainRequest, on_event: EventFn | None = None) -> TrainResult:
    """Train one fold; every user mistake is raised before the child process starts."""
    _check_request(request)
    summary = validate_dataset(request.data, orientation=request.orientation)
    if request.fold != "all" and request.splits is None and len(summary.cases) < CV_FOLDS:
        raise SegkitError(
            f"{summary.root}: {len(summary.cases)} training case(s), but --fold {request.fold} is one of nnU-Net's "
            f"{CV_FOLDS} cross-validation folds, which need at least {CV_FOLDS} cases; use --fold all to train on every case"
        )
    output = Path(request.output).expanduser().resolve()
    dataset_id, dataset_name = _dataset_identity(summary)
    workspace = workspace_of(output)
    if not request.resume and workspace.exists():
        shutil.rmtree(workspace)  # a fresh run starts clean; --resume keeps it
    raw_dir = _link_raw_dataset(summary, workspace / "nnUNet_raw" / dataset_name)
    log_path = output / "train.log"
    config = {
        "dataset_id": dataset_id,
        "configuration": request.configuration,
        "fold": request.fold,
        "device": _resolve_device(request.device),
        "resume": request.resume,
        "threads": _threads(request),
        "seed": request.seed,
        "unet_width": _run_width(request, output),
        "log": str(log_path),
        "plans_file": str(plans_file(output, dataset_name)),
        "trainer": request.trainer,
        "plan_overrides": request.plan_overrides,
        "splits": request.splits,
        "schedule": {
            "num_epochs": request.epochs,
            "num_iterations_per_epoch": request.iterations_per_epoch,
            "num_val_iterations_per_epoch": request.val_iterations_per_epoch,
            "mirroring": request.mirroring,
        },
    }
    if request.resume and not Path(config["plans_file"]).is_file() and not raw_dir.exists():
        raise SegkitError(f"{output}: nothing to resume here; run without --resume first")
    env = _child_env(workspace, request)
    events = _run_worker(config, env, output, on_event)
    model_dir = Path(events["trained"]["model_dir"])
    _record_orientation(model_dir, request.orientation)
    zip_path = export_zip(model_dir, output / f"{model_dir.name}.zip") if request.export else None
    epochs = [e for e in events["all"] if e.get("event") == "epoch"]
    return TrainResult(model_dir, zip_path, log_path, len(epochs), epochs[-1] if epochs else {})


def workspace_of(output: Path) -> Path:
    """nnU-Net's own folders (raw, preprocessed, results) under the run's output folder."""
    return Path(output) / "nnunet"


def plans_file(output: Path, dataset_name: str) -> Path:
    return workspace_of(output) / "nnUNet_preprocessed" / dataset_name / "nnUNetPlans.json"


def fold_checkpoints(output: Path, fold: str) -> list[Path]:
    """The checkpoints a --resume of this fold would continue from."""
    return sorted(workspace_of(output).glob(f"nnUNet_results/*/*/fold_{fold}/checkpoint_*.pth"))


def check_resumed_plans(output: Path, dataset_name: str, configuration: str, overrides: dict | None) -> None:
    """--resume continues the run's own plans (nnU-Net does not plan again): refuse plan overrides
    other than the ones the run was planned with, rather than silently keep the old ones."""
    path = plans_file(output, dataset_name)
    if not overrides or not path.is_file():
        return
    planned = json.loads(path.read_text(encoding="utf-8"))["configurations"][configuration]
    for key, asked in (overrides.get("configuration") or {}).items():
        if planned.get(key) != asked:
            raise SegkitError(f"--resume: {output} was planned with {key} {json.dumps(planned.get(key))}, not "
                              f"{json.dumps(asked)}; resume with the first run's options or train into another -o")


def _check_request(request: TrainRequest) -> None:
    if request.configuration not in CONFIGURATIONS:
        raise SegkitError(f"--configuration must be one of {', '.join(CONFIGURATIONS)}, got '{request.configuration}'")
    if request.unet_width is not None and not request.unet_width >= 0.1:
        raise SegkitError(f"--unet-width must be at least 0.1, got {request.unet_width}")
    if request.fold != "all" and not (request.fold.isdigit() and int(request.fold) < 5):
        raise SegkitError(f"--fold must be 0, 1, 2, 3, 4 or 'all', got '{request.fold}'")
    for name in ("epochs", "iterations_per_epoch", "val_iterations_per_epoch"):
        value = getattr(request, name)
        if value is not None and value < 1:
            raise SegkitError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _run_width(request: TrainRequest, output: Path) -> float:
    """The UNet width of this run: as asked, else 1.0; --resume keeps the width the run started with
    (its checkpoint holds a network of that size) and refuses another."""
    saved = None
    previous = output / "train_config.json"
    if request.resume and previous.is_file():
        saved = float(json.loads(previous.read_text(encoding="utf-8")).get("unet_width") or 1.0)
    if saved is not None and request.unet_width is not None and request.unet_width != saved:
        raise SegkitError(f"--resume: {output} was trained with --unet-width {saved:g}; resume with that width or none")
    return saved if saved is not None else (1.0 if request.unet_width is None else request.unet_width)


def _dataset_identity(summary: DatasetSummary) -> tuple[int, str]:
    """DatasetNNN_Name from the folder name when it has that form, else from dataset.json's name."""
    match = _DATASET_NAME.match(summary.root.name)
    if match:
        return int(match.group(1)), summary.root.name
    name = re.sub(r"[^A-Za-z0-9]+", "", str(summary.dataset_json.get("name") or summary.root.name)) or "segkit"
    return DEFAULT_DATASET_ID, f"Dataset{DEFAULT_DATASET_ID:03d}_{name}"


def _link_raw_dataset(summary: DatasetSummary, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        return target
    try:
        target.symlink_to(summary.root.resolve(), target_is_directory=True)
    except OSError:  # file systems without symlinks: copy (datasets for training are modest)
        shutil.copytree(summary.root, target)
    return target


def _resolve_device(device: str) -> str:
    from segkit.runtime.device import resolve_device

    return resolve_device(device)


def _threads(request: TrainRequest) -> int:
    from segkit.runtime.device import cpu_threads

    return request.threads or cpu_threads()


def _child_env(workspace: Path, request: TrainRequest) -> dict:
    """The caller's environment plus nnU-Net's variables, for the child only."""
    env = dict(os.environ)
    env.update(
        {
            "nnUNet_raw": str(workspace / "nnUNet_raw"),
            "nnUNet_preprocessed": str(workspace / "nnUNet_preprocessed"),
            "nnUNet_results": str(workspace / "nnUNet_results"),
            # small machines: no augmentation worker pool, one process for preprocessing
            "nnUNet_n_proc_DA": env.get("nnUNet_n_proc_DA", "0"),
            "nnUNet_def_n_proc": env.get("nnUNet_def_n_proc", "1"),
            "nnUNet_compile": env.get("nnUNet_compile", "false"),
            "OMP_NUM_THREADS": str(_threads(request)),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({k: str(v) for k, v in request.extra_env.items()})
    return env


def _run_worker(config: dict, env: dict, output: Path, on_event: EventFn | None) -> dict:
    output.mkdir(parents=True, exist_ok=True)
    config_path = output / "train_config.json"
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    command = [sys.executable, "-m", "segkit.engines.nnunet._worker", str(config_path)]
    seen: dict = {"all": []}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          text=True, encoding="utf-8", errors="replace") as child:
        try:
            for line in child.stdout:
                event = _parse_event(line)
                if event is None:
                    continue
                seen["all"].append(event)
                seen[event.get("event", "")] = event
                if on_event is not None:
                    on_event(event)
        except BaseException:
            child.terminate()  # Ctrl-C: stop nnU-Net too; --resume continues from the last epoch
            child.wait()
            raise
        code = child.wait()
    if code != 0 or "trained" not in seen:
        error = seen.get("error", {})
        if error.get("type") == "SegkitError":  # bad input found in the worker (e.g. a refused checkpoint)
            raise SegkitError(error.get("message") or "nnU-Net training refused its input")
        reason = f"{error.get('type', 'exit code ' + str(code))}: {error.get('message', '')}".rstrip(": ")
        raise RuntimeError(f"nnU-Net training failed ({reason}); see {config['log']}")
    return seen


def _parse_event(line: str) -> dict | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        return json.loads(line)
    except ValueError:
        return None


def _record_orientation(model_dir: Path, orientation: str | None) -> None:
    """Store the orientation the data was trained in, so segment reorients inputs to it."""
    if not orientation:
        return
    path = model_dir / "dataset.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["segkit_orientation"] = orientation
    tmp = path.with_name(".dataset.json.tmp")
    tmp.write_text(json.dumps(data, indent=4), encoding="utf-8")
    os.replace(tmp, path)


def export_zip(model_dir: Path, zip_path: Path) -> Path:
    """Zip `Trainer__Plans__Config/` (json files + each fold's final checkpoint) under its own name."""
    model_dir = Path(model_dir)
    members = [model_dir / name for name in EXPORTED_FILES if (model_dir / name).is_file()]
    for fold in sorted(model_dir.glob("fold_*")):
        members += [fold / name for name in EXPORTED_FOLD_FILES if (fold / name).is_file()]
    if not any(m.name == "checkpoint_final.pth" for m in members):
        raise SegkitError(f"{model_dir}: no fold has checkpoint_final.pth yet; finish training (or --resume) first")
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            arcname = str(Path(model_dir.name) / member.relative_to(model_dir))
            if member.suffix == ".pth":
                archive.writestr(arcname, _inference_checkpoint(member))
            else:
                archive.write(member, arcname=arcname)
    os.replace(tmp, zip_path)
    return zip_path


def _inference_checkpoint(path: Path) -> bytes:
    """The checkpoint without optimizer state (two thirds of its size), which inference never reads.
    Resuming uses the full checkpoint in the workspace, not the zip."""
    import io

    import torch

    from segkit.engines.nnunet.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    checkpoint["optimizer_state"] = None
    checkpoint["grad_scaler_state"] = None
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()
