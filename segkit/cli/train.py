"""`segkit train`: train an nnU-Net v2 model for a task on a dataset in nnU-Net v2 format."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from segkit.cli.main import app


@app.command("train")
def train(
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder in nnU-Net v2 format (dataset.json, imagesTr/, labelsTr/)."),
    task: Optional[str] = typer.Option(
        None, "-task", "--task", "-t", help="nnU-Net task this model is for (its orientation is recorded in the model)."
    ),
    output: Path = typer.Option(Path("segkit_model"), "-o", "--output", help="Folder for the workspace, log and zip."),
    fold: str = typer.Option("0", "--fold", help="Cross-validation fold 0-4, or 'all' to train on every case."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs (nnU-Net's default: 1000)."),
    iterations: Optional[int] = typer.Option(
        None, "--iterations-per-epoch", min=1, help="Training iterations per epoch (nnU-Net's default: 250)."
    ),
    val_iterations: Optional[int] = typer.Option(
        None, "--val-iterations-per-epoch", min=1, help="Validation iterations per epoch (nnU-Net's default: 50)."
    ),
    configuration: str = typer.Option("3d_fullres", "--configuration", "-c", help="3d_fullres | 2d | 3d_lowres"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N] | mps"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in -o from its last checkpoint."),
    seed: Optional[int] = typer.Option(
        None, "--seed",
        help="nnU-Net: seed Python, NumPy and torch in the training process (patch sampling, augmentation, initial weights).",
    ),
    mirroring: bool = typer.Option(
        True, "--mirroring/--no-mirroring",
        help="nnU-Net: flip patches in training and allow flips at inference. --no-mirroring for labels that name a side "
             "(also limits rotations to 30 degrees); lpm_nnsam2 always trains without mirroring.",
    ),
    architecture: str = typer.Option("sc2snet", "--architecture", help="cc_fodf: sc2snet | unet (the CNN-only baseline)."),
    slice_size: int = typer.Option(144, "--slice-size", help="cc_fodf: square slice size, a multiple of 16 (paper: 144)."),
    width: float = typer.Option(1.0, "--width", help="cc_fodf: CNN channel multiplier (1.0: 64..1024 as in the paper)."),
    sam_grid: int = typer.Option(64, "--sam-grid", help="cc_fodf: SAM token grid side (paper: 64; 14 for CPU runs)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="cc_fodf: slices per batch (paper: 32)."),
    images: Optional[Path] = typer.Option(None, "--images", help="lpm_nnsam2: folder of unlabelled 3D images to pseudo-label."),
    support: Optional[Path] = typer.Option(None, "--support", help="lpm_nnsam2: support image with annotated slice(s)."),
    support_mask: Optional[Path] = typer.Option(None, "--support-mask", help="lpm_nnsam2: support labels (1 right, 2 left LPM)."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="lpm_nnsam2: nnU-Net rounds (nnSAM2: 3)."),
    propagator: str = typer.Option("litemedsam", "--propagator", help="lpm_nnsam2: sam2 | litemedsam (pseudo-labels)."),
) -> None:
    """Fingerprint, plan, preprocess and train with nnunetv2; writes a model zip for install-task/--model-dir."""
    from segkit.errors import SegkitError
    from segkit.training.nnunet import TrainRequest, train as run_training

    orientation = None
    if task:
        from segkit.registry.schema import load_registry

        spec = load_registry().get(task)
        if data is None and spec.framework != "nnsam2":
            raise SegkitError("Missing option '--data' (the training dataset folder)")
        if spec.framework == "sc2snet":  # cc_fodf: segkit's own SC2S-Net trainer
            from segkit.tasks.cc_fodf.train import run_from_cli

            run_from_cli(data=data, output=output, epochs=epochs, batches_per_epoch=iterations, device=device,
                         resume=resume, architecture=architecture, slice_size=slice_size, width=width,
                         sam_grid=sam_grid, batch_size=batch_size)
            return
        if spec.framework == "nnsam2":  # lpm_nnsam2: pseudo-labels, then nnU-Net rounds
            from segkit.tasks.lpm_nnsam2.rounds import LpmTrainRequest, train_lpm

            if images is None or support is None or support_mask is None:
                raise SegkitError("train -task lpm_nnsam2 needs --images DIR --support IMAGE --support-mask MASK")
            package = train_lpm(LpmTrainRequest(
                images=images, support=support, support_mask=support_mask, output=output, rounds=rounds,
                propagator=propagator, epochs=epochs, iterations_per_epoch=iterations,
                val_iterations_per_epoch=val_iterations, seed=seed, device=device,
            ), say=lambda text: sys.stderr.write(text + "\n"))
            typer.echo(f"model\t{package}")
            return
        if spec.framework != "nnunetv2":
            raise SegkitError(f"task '{task}' is a {spec.framework} task; `segkit train` trains nnU-Net v2 tasks")
        orientation = spec.input.orientation if spec.input.orientation != "native" else None
    if data is None:
        raise SegkitError("Missing option '--data' (an nnU-Net v2 dataset folder)")
    request = TrainRequest(
        data=data,
        output=output,
        configuration=configuration,
        fold=fold,
        epochs=epochs,
        iterations_per_epoch=iterations,
        val_iterations_per_epoch=val_iterations,
        device=device,
        resume=resume,
        mirroring=mirroring,
        seed=seed,
        orientation=orientation,
    )
    from segkit.training.progress import EpochProgress

    with EpochProgress("nnU-Net", _nnunet_stats) as progress:
        result = run_training(request, on_event=progress.on_event)
    typer.echo(f"model\t{result.model_dir}")
    typer.echo(f"zip\t{result.zip_path}")


def _nnunet_stats(event: dict) -> str:
    from segkit.training.progress import number

    return f"loss {number(event.get('train_loss'))}  pseudo-Dice {number(event.get('pseudo_dice'))}"
