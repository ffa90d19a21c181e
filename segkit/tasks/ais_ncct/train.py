"""`segkit train -task ais_ncct`: AISCT-SAM trained with the METHODS recipe, in segkit's own loop.

    data      an nnU-Net v2 folder with the CT only; segkit strips the skull, builds and caches the
              registered mirror, resamples to --spacing and normalises (training-set foreground stats)
    recipe    AdamW (lr 1e-4, weight decay 3e-5), poly schedule (exponent 0.9), Dice + CE 0.5/0.5
              (Dice on the lesion class), gradient clipping at 12; a third of the patches centred
              on a lesion; flips and intensity jitter
    output    OUT/checkpoints/last.pt after every epoch (segkit.training's layout, atomic; --resume
              continues from it; no best.pt: the held-out cases are scored once, after the last
              epoch), OUT/model/ (model_card.json + model.pt): the package `segment --model` reads,
              and OUT/ais_ncct_model.zip, the same two files for `install-task ais_ncct --custom-url`

Not nnU-Net's trainer: upstream trains inside nnU-Net v2 (its planner, preprocessor and
batchgenerators augmentation); segkit reproduces the recipe, not that integration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit.errors import SegkitError

LEARNING_RATE = 1e-4
WEIGHT_DECAY = 3e-5
GRAD_CLIP = 12.0
POLY_EXPONENT = 0.9
DEFAULT_EPOCHS = 1000  # nnU-Net's
DEFAULT_ITERATIONS = 250
FOREGROUND_FRACTION = 1.0 / 3.0
ZIP_NAME = "ais_ncct_model.zip"


def _check(common, options):
    from segkit.tasks.ais_ncct.options import DEFAULT_BACKBONE
    from segkit.tasks.ais_ncct.pipeline import parse_spacing

    if options.data is None:
        raise SegkitError("Missing option '--data' (an nnU-Net v2 dataset folder with the CT as channel 0)")
    if options.patch_side % 32:
        raise SegkitError(f"--patch-side {options.patch_side}: must be a multiple of 32 (the backbone's strides)")
    return options.backbone or DEFAULT_BACKBONE, parse_spacing(options.spacing)


def train_task(spec, common, options, say) -> list[tuple]:
    from segkit.tasks.ais_ncct.dataset import normalisation, prepare_cases, read_dataset, training_cases
    from segkit.training.checkpoints import check_output_folder
    from segkit.training.progress import EpochProgress, number

    backbone, spacing = _check(common, options)
    loaded = read_dataset(options.data)  # every file checked before any registration or weights
    if len(loaded) < 2:
        raise SegkitError(f"{options.data}: {len(loaded)} case(s); ais_ncct training needs at least 2 (one held out)")
    out = Path(common.output).expanduser()
    check_output_folder(out, common.resume)  # before the registrations, which take minutes
    prepared = prepare_cases(loaded, out / "mirror_cache", say)
    stats = normalisation(prepared)
    cases = training_cases(prepared, stats, spacing)
    held_out = max(1, len(cases) // 5)
    train_cases, val_cases = cases[:-held_out], cases[-held_out:]
    settings = {"backbone": backbone, "spacing": spacing, "stats": stats}

    def stats_text(event: dict) -> str:
        return f"loss {number(event.get('train_loss'))}"

    with EpochProgress("AISCT-SAM", stats_text) as progress:
        net, summary = run_training(train_cases, val_cases, common, options, settings, out, progress.on_event)
    card = model_card(net, options, settings, summary)
    from segkit.tasks.ais_ncct.package import write_package

    zip_path = out / ZIP_NAME
    folder = write_package(out / "model", net, card, zip_path=zip_path)
    say(f"held-out lesion Dice {number(summary['validation_dice'])} on {len(val_cases)} case(s); model: {folder}")
    return [("model", folder), ("zip", zip_path)]


def build(options, backbone: str, seed):
    import torch

    from segkit.tasks.ais_ncct.network import NetworkConfig, build_network

    if seed is not None:
        torch.manual_seed(int(seed))
    config = NetworkConfig(backbone=backbone, slice_size=options.patch_side, depth=options.patch_depth,
                           mirror=options.mirror_channel)
    return build_network(config, pretrained=options.pretrained_backbone)


def run_training(train_cases, val_cases, common, options, settings, out: Path, on_event):
    import torch

    from segkit.runtime.device import resolve_device
    from segkit.tasks.ais_ncct.network import STATE_RENAMES
    from segkit.training.checkpoints import Trainables
    from segkit.training.loop import EpochLoop, EpochResult

    device = resolve_device(common.device)
    net = build(options, settings["backbone"], common.seed).to(device)
    parameters = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    epochs = common.epochs or DEFAULT_EPOCHS
    iterations = options.iterations_per_epoch or DEFAULT_ITERATIONS
    # only the trained tensors are kept: the frozen backbone is rebuilt (registry or seed) on every start
    parts = Trainables(net, optimizer, net.config.to_dict(), weights=net.trainable_state, strict=False,
                       renames=STATE_RENAMES)
    loop = EpochLoop(out, parts, epochs, on_event, resume=common.resume)
    start = loop.start_epoch
    rng = np.random.default_rng(None if common.seed is None else int(common.seed) + start)

    def one_epoch(epoch: int) -> EpochResult:
        for group in optimizer.param_groups:
            group["lr"] = LEARNING_RATE * (1 - (epoch - 1) / epochs) ** POLY_EXPONENT
        net.train()
        losses = [train_step(net, optimizer, parameters, train_cases, options, rng, device) for _ in range(iterations)]
        return EpochResult({"train_loss": float(np.mean(losses))})

    ran = loop.run(one_epoch)["history"][start:]
    dice = validation_dice(net, val_cases, options, device)
    return net.eval(), {"epochs": epochs, "iterations_per_epoch": iterations, "validation_dice": dice,
                        "final_train_loss": ran[-1]["train_loss"] if ran else None,
                        "train_cases": [c.name for c in train_cases], "validation_cases": [c.name for c in val_cases]}


def train_step(net, optimizer, parameters, cases, options, rng, device) -> float:
    import torch

    from segkit.tasks.ais_ncct.dataset import augment, sample_patch
    from segkit.training.losses import dice_ce_loss

    patches, labels = [], []
    for _ in range(options.patches_per_batch):
        case = cases[int(rng.integers(len(cases)))]
        patch, label = sample_patch(case, options.patch_side, options.patch_depth, rng, rng.random() < FOREGROUND_FRACTION)
        patch, label = augment(patch, label, rng)
        patches.append(patch)
        labels.append(label)
    volume = torch.from_numpy(np.stack(patches)).to(device)
    target = torch.from_numpy(np.stack(labels).astype(np.int64)).to(device)
    loss = dice_ce_loss(net(volume), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, GRAD_CLIP)
    optimizer.step()
    return float(loss.detach())


def validation_dice(net, cases, options, device) -> float | None:
    """Lesion Dice of the held-out cases, pooled, as segment computes it (sliding window, >= 0.5 in the brain)."""
    from segkit.tasks.ais_ncct.inference import predict_volume

    net.eval()
    overlap = total = 0
    for case in cases:
        probability = predict_volume(net, case.channels, options.patch_side, options.patch_depth, device)
        predicted = (probability >= 0.5) & case.brain
        overlap += int((predicted & (case.label > 0)).sum())
        total += int(predicted.sum() + (case.label > 0).sum())
    return None if total == 0 else 2.0 * overlap / total


def model_card(net, options, settings, summary) -> dict:
    from segkit.tasks.ais_ncct.pipeline import REGISTRATION_VERSION

    backbone = {"name": settings["backbone"], "pretrained": bool(options.pretrained_backbone)}
    if options.pretrained_backbone:
        from segkit.models.sam import checkpoint_path
        from segkit.registry.store import sha256_of

        backbone["sha256"] = sha256_of(checkpoint_path(settings["backbone"]))
    return {
        "network": net.config.to_dict(), "backbone": backbone,
        "spacing_mm": list(settings["spacing"]) if settings["spacing"] is not None else None,
        "normalisation": settings["stats"], "registration": REGISTRATION_VERSION,
        "training": {**summary, "recipe": {"optimizer": "AdamW", "lr": LEARNING_RATE, "weight_decay": WEIGHT_DECAY,
                                           "schedule": f"poly {POLY_EXPONENT}", "loss": "0.5 CE + 0.5 Dice",
                                           "grad_clip": GRAD_CLIP, "loop": "segkit (not nnU-Net's trainer)"}},
    }
