"""`segkit train -task ais_ncct`: AISCT-SAM trained inside nnU-Net v2, as upstream does.

    data      an nnU-Net v2 folder with the CT only; segkit strips the skull and builds the registered
              mirror of each case (cached in OUT/mirror_cache), then writes the two-channel dataset
              (OUT/dataset/Dataset502_AisNcct, see dataset.py)
    nnU-Net   segkit's nnU-Net engine (segkit.engines.nnunet): fingerprint (CT statistics from the
              lesion voxels), plans with AISCT-SAM's patch, batch, spacing and network written into
              the 3d_fullres configuration, nnU-Net's preprocessing (crop, CT normalisation per
              channel, resampling), data loading, foreground oversampling and augmentation, and the
              AISCT-SAM recipe (nnunet_trainer.py); the last fifth of the cases is the validation fold
    output    OUT/nnunet/ (nnU-Net's workspace: a checkpoint every epoch, which --resume continues),
              OUT/model/ (model_card.json + model.pt: the package `segment --model` reads, converted
              from nnU-Net's final checkpoint), OUT/ais_ncct_model.zip (the same, for
              `install-task ais_ncct --custom-url`)
"""

from __future__ import annotations

from pathlib import Path

from segkit.errors import SegkitError

DATASET_NAME = "Dataset502_AisNcct"
TRAINER = "segkit.tasks.ais_ncct.nnunet_trainer:AisctSamTrainer"
CONFIGURATION = "3d_fullres"
ZIP_NAME = "ais_ncct_model.zip"
# the METHODS recipe, applied by nnunet_trainer.AisctSamTrainer (gradient clipping at 12 is nnU-Net's own);
# the learning rate is --learning-rate (upstream 1e-4), carried to the trainer in the plan under RECIPE_KEY
RECIPE_KEY = "segkit_recipe"
WEIGHT_DECAY = 3e-5
LOSS_WEIGHTS = (0.5, 0.5)  # (CE, Dice)


def _check(common, options):
    from segkit.tasks.ais_ncct.options import DEFAULT_BACKBONE
    from segkit.tasks.ais_ncct.pipeline import parse_spacing

    if options.data is None:
        raise SegkitError("Missing option '--data' (an nnU-Net v2 dataset folder with the CT as channel 0)")
    if options.patch_side % 32:
        raise SegkitError(f"--patch-side {options.patch_side}: must be a multiple of 32 (the backbone's strides)")
    backbone = options.backbone or DEFAULT_BACKBONE
    if options.pretrained_backbone:
        from segkit.models.sam import checkpoint_path

        checkpoint_path(backbone)  # not installed: refused here, not minutes later in nnU-Net's worker
    return backbone, parse_spacing(options.spacing)


def check_run_folder(out: Path, resume: bool) -> None:
    """Refuse to train over a run without --resume, and --resume without one: before any registration."""
    from segkit.engines.nnunet.train import fold_checkpoints, workspace_of

    if workspace_of(out).exists() and not resume:
        raise SegkitError(f"{out} already holds a training run; pass --resume to continue it or choose another -o")
    if resume and not fold_checkpoints(out, "0"):
        raise SegkitError(f"--resume: no checkpoint under {workspace_of(out)}")


def train_task(spec, common, options, say) -> list[tuple]:
    from segkit.tasks.ais_ncct.dataset import prepare_cases, read_dataset, validation_split, write_nnunet_dataset
    from segkit.training.progress import EpochProgress, number

    backbone, spacing = _check(common, options)
    loaded = read_dataset(options.data)  # every file checked before any registration or weights
    if len(loaded) < 2:
        raise SegkitError(f"{options.data}: {len(loaded)} case(s); ais_ncct training needs at least 2 (one held out)")
    out = Path(common.output).expanduser()
    check_run_folder(out, common.resume)
    overrides = plan_overrides(options, network_settings(options, backbone), spacing)
    if common.resume:
        from segkit.engines.nnunet.train import check_resumed_plans

        check_resumed_plans(out, DATASET_NAME, CONFIGURATION, overrides)
    prepared = prepare_cases(loaded, out / "mirror_cache", say)
    dataset = write_nnunet_dataset(prepared, out / "dataset" / DATASET_NAME)
    splits = validation_split([case for case, _, _ in prepared])

    def stats_text(event: dict) -> str:
        return f"loss {number(event.get('train_loss'))}  pseudo-Dice {number(event.get('pseudo_dice'))}"

    with EpochProgress("AISCT-SAM (nnU-Net)", stats_text) as progress:
        result = run_nnunet(dataset, out, common, options, overrides, splits, progress.on_event)
    from segkit.tasks.ais_ncct.package import write_package

    net, card = package_from_nnunet(result, options, backbone)
    held_out = [entry for entry in prepared if entry[0] in splits[0]["val"]]
    card["training"]["validation_dice"] = validation_dice(net, held_out, card, common.device)
    folder = write_package(out / "model", net, card, zip_path=out / ZIP_NAME)
    say(f"held-out lesion Dice {number(card['training']['validation_dice'])} on {len(held_out)} case(s); model: {folder}")
    return [("model", folder), ("zip", out / ZIP_NAME)]


def network_settings(options, backbone: str) -> dict:
    from segkit.tasks.ais_ncct.network import NetworkConfig

    return NetworkConfig(backbone=backbone, slice_size=options.patch_side, depth=options.patch_depth,
                         mirror=options.mirror_channel).to_dict()


def plan_overrides(options, network: dict, spacing) -> dict:
    """AISCT-SAM's settings in nnU-Net's 3d_fullres plan: patch (D, S, S), batch, the network, CT
    normalisation of both channels, the model spacing as (S-I, R-L, A-P) when one is asked for, no
    transpose (the dataset's axes are already the network's), and the learning rate for the trainer."""
    from segkit.tasks.ais_ncct.network import NNUNET_NETWORK

    configuration = {
        "patch_size": [options.patch_depth, options.patch_side, options.patch_side],
        "batch_size": options.patches_per_batch,
        "normalization_schemes": ["CTNormalization", "CTNormalization"],
        "use_mask_for_norm": [False, False],
        "architecture": {"network_class_name": NNUNET_NETWORK, "_kw_requires_import": [],
                         "arch_kwargs": {**network, "pretrained": bool(options.pretrained_backbone)}},
        RECIPE_KEY: {"initial_lr": options.learning_rate},
    }
    if spacing is not None:
        configuration["spacing"] = [spacing[2], spacing[0], spacing[1]]
    return {"configuration": configuration, "plans": {"transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2]}}


def run_nnunet(dataset: Path, out: Path, common, options, overrides: dict, splits: list, on_event):
    from segkit.engines.nnunet.train import TrainRequest, train

    return train(TrainRequest(
        data=dataset, output=out, configuration=CONFIGURATION, fold="0", epochs=common.epochs,
        iterations_per_epoch=options.iterations_per_epoch, val_iterations_per_epoch=options.val_iterations_per_epoch,
        device=common.device, resume=common.resume, seed=common.seed, trainer=TRAINER, plan_overrides=overrides,
        splits=splits, export=False,
    ), on_event=on_event)


def package_from_nnunet(result, options, backbone: str):
    """nnU-Net's final checkpoint (read as data) into segkit's package: the network rebuilt from the
    plans, every tensor loaded strictly, the plans' spacing and per-channel CT statistics in the card."""
    import json

    from segkit.engines.nnunet.checkpoint import load_checkpoint
    from segkit.tasks.ais_ncct.network import NetworkConfig, build_network

    model_dir = Path(result.model_dir)
    plans = json.loads((model_dir / "plans.json").read_text(encoding="utf-8"))
    planned = plans["configurations"][CONFIGURATION]
    config = NetworkConfig.from_dict(planned["architecture"]["arch_kwargs"])
    net = build_network(config, pretrained=bool(options.pretrained_backbone))
    checkpoint = load_checkpoint(model_dir / "fold_0" / "checkpoint_final.pth")
    net.load_state_dict(checkpoint["network_weights"])
    z, x, y = planned["spacing"]
    channel_stats = plans["foreground_intensity_properties_per_channel"]
    keys = ("mean", "std", "percentile_00_5", "percentile_99_5")
    card = model_card(net, options, backbone, spacing=[x, y, z],
                      stats=[{k: float(channel_stats[c][k]) for k in keys} for c in ("0", "1")])
    card["training"].update(epochs=int(checkpoint["current_epoch"]), nnunet_model=str(model_dir),
                            final_train_loss=result.last_epoch.get("train_loss"))
    return net.eval(), card


def validation_dice(net, held_out, card: dict, device: str) -> float | None:
    """Lesion Dice of the validation fold's cases, pooled."""
    overlap = total = 0
    for predicted, (_, _, label) in zip(held_out_masks(net, held_out, card, device), held_out):
        overlap += int((predicted & (label > 0)).sum())
        total += int(predicted.sum() + (label > 0).sum())
    return None if total == 0 else 2.0 * overlap / total


def held_out_masks(net, held_out, card: dict, device: str = "cpu"):
    """Each prepared case's lesion mask as segment computes it (>= 0.5 inside the brain)."""
    from segkit.runtime.device import resolve_device
    from segkit.tasks.ais_ncct.inference import lesion_mask

    device = resolve_device(device)
    net.to(device)
    for _, pre, _ in held_out:
        yield lesion_mask(net, pre, card, 0.5, 1, device) > 0
    net.to("cpu")


def model_card(net, options, backbone_name: str, spacing, stats) -> dict:
    from segkit.tasks.ais_ncct.pipeline import REGISTRATION_VERSION

    backbone = {"name": backbone_name, "pretrained": bool(options.pretrained_backbone)}
    if options.pretrained_backbone:
        from segkit.models.sam import checkpoint_path
        from segkit.registry.store import sha256_of

        backbone["sha256"] = sha256_of(checkpoint_path(backbone_name))
    return {
        "network": net.config.to_dict(), "backbone": backbone, "spacing_mm": [float(s) for s in spacing],
        "normalisation": stats, "registration": REGISTRATION_VERSION,
        "training": {"recipe": {"optimizer": "AdamW", "lr": options.learning_rate, "weight_decay": WEIGHT_DECAY,
                                "schedule": "poly 0.9 (nnU-Net's)", "loss": f"{LOSS_WEIGHTS[0]} CE + {LOSS_WEIGHTS[1]} Dice",
                                "grad_clip": 12.0,
                                "loop": "nnU-Net v2 (nnUNetTrainer, segkit's AisctSamTrainer)"}},
    }
