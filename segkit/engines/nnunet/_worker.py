"""The child process that runs nnU-Net: `python -m segkit.engines.nnunet._worker CONFIG.json`.

Why a child process: nnunetv2 reads nnUNet_raw / nnUNet_preprocessed / nnUNet_results (and
nnUNet_n_proc_DA, nnUNet_def_n_proc) from os.environ, and older releases copy them into module
globals at import time. Running it in a child with its own environment keeps those variables out of
the caller's process, lets one process train several datasets, and isolates its worker pools.

Protocol: JSON lines on the original stdout ({"event": "stage" | "epoch" | "done" | "error"});
everything nnU-Net prints goes to the log file named in the config.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def _event_stream():
    """Keep the real stdout for events, then point fds 1 and 2 at the log so nnU-Net's prints land there."""
    events = os.fdopen(os.dup(1), "w", buffering=1)
    return events


def _redirect_output(log_path: str) -> None:
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)


def main(config_path: str) -> int:
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    events = _event_stream()
    _redirect_output(config["log"])

    def emit(event: dict) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    try:
        _run(config, emit)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one event, traceback in the log
        traceback.print_exc()
        from segkit.errors import SegkitError

        kind = "SegkitError" if isinstance(exc, SegkitError) else type(exc).__name__  # the parent exits 2 for it
        emit({"event": "error", "type": kind, "message": str(exc).strip().splitlines()[0] if str(exc).strip() else ""})
        return 1
    emit({"event": "done"})
    return 0


def _run(config: dict, emit) -> None:
    import torch

    torch.set_num_threads(int(config.get("threads") or 2))
    if config.get("seed") is not None:
        _seed_everything(int(config["seed"]))
    dataset_id = int(config["dataset_id"])
    if not config.get("resume") or not os.path.isfile(config["plans_file"]):
        _plan_and_preprocess(dataset_id, config, emit)
    _train(dataset_id, config, emit)


def _seed_everything(seed: int) -> None:
    """nnU-Net seeds nothing; its patch sampling and augmentation draw from these global generators
    (in this process when nnUNet_n_proc_DA=0, segkit's default), and torch initialises the weights."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _plan_and_preprocess(dataset_id: int, config: dict, emit) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )

    emit({"event": "stage", "stage": "fingerprint"})
    extract_fingerprint_dataset(dataset_id, num_processes=1, check_dataset_integrity=False, clean=True, verbose=False)
    _fingerprint_without_ignore(dataset_id)
    emit({"event": "stage", "stage": "plan"})
    # the planner passes nnUNet_n_proc_DA to torch.set_num_threads, so it must be positive here
    training_workers = os.environ.get("nnUNet_n_proc_DA", "0")
    os.environ["nnUNet_n_proc_DA"] = str(max(1, int(config.get("threads") or 1)))
    try:
        plan_experiment_dataset(dataset_id)
    finally:
        os.environ["nnUNet_n_proc_DA"] = training_workers
    override_plans(config["plans_file"], config["configuration"], config.get("plan_overrides"))
    emit({"event": "stage", "stage": "preprocess"})
    preprocess_dataset(dataset_id, configurations=[config["configuration"]], num_processes=[1], verbose=False)


def _fingerprint_without_ignore(dataset_id: int) -> None:
    """CT normalisation statistics from annotated voxels only, not the ignore label (fingerprint.py)."""
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    from segkit.engines.nnunet.fingerprint import refit_without_ignore

    name = maybe_convert_to_dataset_name(dataset_id)
    refit_without_ignore(Path(nnUNet_raw) / name, Path(nnUNet_preprocessed) / name / "dataset_fingerprint.json")


def override_plans(plans_file: str, configuration: str, overrides: dict | None) -> None:
    """A task's own settings written into the planned configuration (patch, spacing, network, ...) before
    the preprocessor and the trainer read them, so the model's exported plans.json holds what was trained."""
    if not overrides:
        return
    path = Path(plans_file)
    plans = json.loads(path.read_text(encoding="utf-8"))
    settings = plans["configurations"][configuration]
    new_order = (overrides.get("plans") or {}).get("transpose_forward")
    if new_order is not None:  # the planned per-axis values follow the new axis order
        _reorder_axes(settings, plans["transpose_forward"], new_order)
    plans.update(overrides.get("plans") or {})
    settings.update(overrides.get("configuration") or {})
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(plans, indent=4), encoding="utf-8")
    os.replace(tmp, path)


def _reorder_axes(settings: dict, old_order, new_order) -> None:
    for key in ("spacing", "median_image_size_in_voxels", "patch_size"):
        if key in settings:
            original = [None] * len(old_order)
            for value, axis in zip(settings[key], old_order):
                original[axis] = value
            settings[key] = [original[axis] for axis in new_order]


def trainer_class(name: str | None):
    """SegkitTrainer, or a task's subclass named "module:Class"."""
    import importlib

    from segkit.engines.nnunet.trainer import SegkitTrainer

    if not name:
        return SegkitTrainer
    module, _, attribute = name.partition(":")
    chosen = getattr(importlib.import_module(module), attribute)
    if not issubclass(chosen, SegkitTrainer):
        raise TypeError(f"{name} is not a SegkitTrainer")
    return chosen


def _write_splits(plans_file: str, splits: list | None) -> None:
    """The caller's train/validation split, where nnU-Net looks for it (else it makes 5 random folds)."""
    if splits:
        (Path(plans_file).parent / "splits_final.json").write_text(json.dumps(splits, indent=4), encoding="utf-8")


def _train(dataset_id: int, config: dict, emit) -> None:
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.run.run_training import maybe_load_checkpoint

    trainer_type = trainer_class(config.get("trainer"))
    _write_splits(config["plans_file"], config.get("splits"))
    plans = load_json(config["plans_file"])
    plans["continue_training"] = bool(config.get("resume"))
    scale_features(plans, config["configuration"], float(config.get("unet_width") or 1.0))
    dataset_json = load_json(os.path.join(os.path.dirname(config["plans_file"]), "dataset.json"))
    fold = config["fold"] if config["fold"] == "all" else int(config["fold"])
    trainer_type.schedule = dict(config.get("schedule") or {})
    trainer_type.on_epoch = staticmethod(emit)
    trainer = trainer_type(plans=plans, configuration=config["configuration"], fold=fold,
                            dataset_json=dataset_json, device=torch.device(config["device"]))
    trainer.apply_schedule()
    maybe_load_checkpoint(trainer, bool(config.get("resume")), False, None)
    trainer.apply_schedule()  # a resumed checkpoint keeps the schedule asked for now
    emit({"event": "stage", "stage": "train", "start_epoch": int(trainer.current_epoch), "epochs": trainer.num_epochs})
    trainer.run_training()
    emit({"event": "trained", "model_dir": trainer.output_folder_base})


def scale_features(plans: dict, configuration: str, width: float) -> None:
    """Multiply the planned features per stage by `width` (at least 4 each), in the configuration itself.

    Applied to the plans the trainer is built from, so the model's exported plans.json holds the
    scaled network and nnU-Net's predictor rebuilds exactly it; the planner's file stays as planned,
    so --resume with the same width scales the same way.
    """
    if width == 1.0:
        return
    configurations = plans["configurations"]
    settings, name = configurations[configuration], configuration
    while "architecture" not in configurations[name]:  # 3d_lowres etc. inherit their network
        name = configurations[name]["inherits_from"]
    architecture = json.loads(json.dumps(configurations[name]["architecture"]))
    features = architecture["arch_kwargs"]["features_per_stage"]
    architecture["arch_kwargs"]["features_per_stage"] = [max(4, int(round(f * width))) for f in features]
    settings["architecture"] = architecture


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
