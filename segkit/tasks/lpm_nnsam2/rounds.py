"""`segkit train -task lpm_nnsam2`: pseudo-labels -> IoU selection -> nnU-Net rounds -> model package.

Round 1 trains on the top-decile slices by quality (signal.py: IoU x agreement with the aligned
support; failed slices never) of every case (other slices carry nnU-Net's ignore
label). After each round the model segments every image; the smooth cases that agree with the
previous stage (selection.py) become the next round's training set, with full labels. Every round
keeps its model zip, its selection log and its Dice against the previous stage; the last round's
model folder is the package's final model (package.py).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from segkit.errors import SegkitError
from segkit.io.writer import atomic_write_json, atomic_write_text
from segkit.tasks.common_options import DEFAULT_PROPAGATOR
from segkit.tasks.facts import orientation
from segkit.tasks.lpm_nnsam2.labels import TASK
from segkit.tasks.lpm_nnsam2 import selection
from segkit.tasks.lpm_nnsam2.package import CARD

FALLBACK = "fallback: previous stage labels"
IGNORE = 3  # nnU-Net's ignore label must be the highest label value, declared as "ignore" in dataset.json
NIFTI = (".nii.gz", ".nii")


@dataclass
class LpmTrainRequest:
    images: Path
    support: Path
    support_mask: Path
    output: Path
    rounds: int = 3
    propagator: str = DEFAULT_PROPAGATOR  # one default for segment and train (common_options.py)
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    val_iterations_per_epoch: int | None = None
    seed: int | None = None
    device: str = "auto"
    backend: str = "auto"
    modality: str | None = None  # None: guessed per image
    unet_width: float = 1.0  # nnU-Net's planned features per stage, scaled


Say = Callable[[str], None]


def train_task(spec, common, options, say: Say) -> list[tuple]:
    """`segkit train -task lpm_nnsam2`: pseudo-labels, then nnU-Net rounds; rows for stdout."""
    if common.resume:  # refused rather than ignored: the run would pseudo-label and train round 1 again
        raise SegkitError("train -task lpm_nnsam2 cannot --resume yet: a run starts again from the pseudo-labels; "
                          "leave out --resume to start over in -o")
    if options.images is None or options.support is None or options.support_mask is None:
        raise SegkitError("train -task lpm_nnsam2 needs --images DIR --support IMAGE --support-mask MASK")
    package = train_lpm(LpmTrainRequest(
        images=options.images, support=options.support, support_mask=options.support_mask, output=common.output,
        rounds=options.rounds, propagator=options.propagator, epochs=common.epochs,
        iterations_per_epoch=options.iterations_per_epoch, val_iterations_per_epoch=options.val_iterations_per_epoch,
        seed=common.seed, device=common.device, modality=None if options.modality == "auto" else options.modality,
        unet_width=LpmTrainRequest.unet_width if options.unet_width is None else options.unet_width,
    ), say=say)
    return [("model", package)]


def image_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise SegkitError(f"{folder}: --images must be a folder of 3D NIfTI images")
    files = sorted(p for p in folder.iterdir() if p.name.lower().endswith(NIFTI) and not p.name.startswith("."))
    if not files:
        raise SegkitError(f"{folder}: no .nii/.nii.gz images found for --images")
    return files


def train_lpm(request: LpmTrainRequest, say: Say = lambda text: None) -> Path:
    from segkit.registry.schema import load_registry
    from segkit.tasks.lpm_nnsam2.fewshot import prepare_support, pseudo_label
    from segkit.tasks.lpm_nnsam2.inputs import load_support, load_targets
    from segkit.tasks.lpm_nnsam2.task import make_propagator

    if request.rounds < 1:
        raise SegkitError(f"--rounds must be at least 1, got {request.rounds}")
    spec = load_registry().get("lpm_nnsam2")
    files = image_files(request.images)
    image, mask, seeds = load_support(request.support, request.support_mask)
    targets = load_targets(files)
    output = Path(request.output).expanduser().resolve()
    output.mkdir(parents=True, exist_ok=True)
    propagator = make_propagator(request.propagator, spec, request.device, request.backend)
    support = prepare_support(image, mask, seeds, modality=request.modality)
    say(f"pseudo-labelling {len(targets)} image(s) with {request.propagator}")
    results = []
    for index, (target, path) in enumerate(zip(targets, files), start=1):
        results.append(pseudo_label(target, support, propagator, modality=request.modality))
        say(f"pseudo-labels {index}/{len(targets)}: {path.name}" + (f" ({results[-1].info['warning']})"
                                                                   if "warning" in results[-1].info else ""))
    cases = [_case_id(i) for i in range(len(results))]
    previous = {case: _ras_labels(r) for case, r in zip(cases, results)}
    ras_images = {case: _ras_image(r) for case, r in zip(cases, results)}
    modality = results[0].modality
    dataset = _round_one_dataset(output / "round_1" / "dataset", cases, results, ras_images, modality)
    card = {"task": "lpm_nnsam2", "propagator": request.propagator, "unet_width": request.unet_width, "rounds": [],
            "images": [str(f.resolve()) for f in files],
            "ignore_label": IGNORE, "selection": dataset["log"]}
    model_dir, predictions, selected = None, previous, cases  # round 1 trains on the pseudo-labels above
    for round_index in range(1, request.rounds + 1):
        round_dir = output / f"round_{round_index}"
        if round_index > 1:
            dataset = _next_round_dataset(round_dir / "dataset", cases, predictions, selected, ras_images, modality)
        say(f"round {round_index}: nnU-Net on {len(dataset['cases'])} case(s)")
        model_dir, zip_path = _train_round(request, Path(dataset["root"]), round_dir)
        predictions = _predict_all(spec, model_dir, ras_images, round_dir / "predictions", request.device)
        rows, selected, predictions = _select_round(cases, predictions, previous, round_index < request.rounds)
        if any(r.get("reason") == FALLBACK for r in rows):
            say(f"round {round_index}: the model found both muscles in no image (train longer: --epochs, "
                f"--iterations-per-epoch); round {round_index + 1} reuses the previous stage's labels")
        _write_log(round_dir / "selection.tsv", rows)
        dice = float(np.mean([r["dice_vs_previous"] for r in rows]))
        say(f"round {round_index}: mean Dice vs previous stage {dice:.3f}; {len(selected)} case(s) kept")
        card["rounds"].append({"round": round_index, "model_zip": str(zip_path.relative_to(output)),
                               "model_dir": str(model_dir), "selection_log": f"round_{round_index}/selection.tsv",
                               "training_cases": dataset["cases"], "dice_vs_previous": dice})
        previous = predictions
    return _write_package(output, model_dir, card)


def _select_round(cases, predictions: dict, previous: dict, more_rounds: bool) -> tuple[list[dict], list, dict]:
    """(selection rows, kept cases, labels for the next round) after one round's predictions."""
    rows = [{"case": c, "max_area_ratio": selection.max_area_ratio(predictions[c]),
             "dice_vs_previous": selection.mean_dice(predictions[c], previous[c])} for c in cases]
    rows = selection.select_cases(rows, usable={c for c in cases if _has_both_sides(predictions[c])})
    selected = [r["case"] for r in rows if r["kept"]]
    if selected or not more_rounds:
        return rows, selected, predictions
    # nothing to learn from: the next round keeps the previous stage's labels (logged), rather than
    # training nnU-Net on empty label maps
    fallback = sorted(cases, key=lambda c: -int(_has_both_sides(previous[c])))[: max(2, len(cases) // 5)]
    for row in rows:
        if row["case"] in fallback:
            row["kept"], row["reason"] = True, FALLBACK
    return rows, fallback, {**predictions, **{c: previous[c] for c in fallback}}


def _write_package(output: Path, model_dir: Path, card: dict) -> Path:
    """The last round's model folder under final/, and the card that names it."""
    final = output / "final" / model_dir.name
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(model_dir, final, ignore=shutil.ignore_patterns("checkpoint_latest.pth", "checkpoint_best.pth", "validation"))
    card["final_model"] = str(final.relative_to(output))
    atomic_write_json(output / CARD, card)
    return output


def _has_both_sides(labels: np.ndarray) -> bool:
    return bool((labels == 1).any() and (labels == 2).any())


def _case_id(index: int) -> str:
    return f"lpm_{index:03d}"


def _ras_labels(result) -> np.ndarray:
    return result.grid.reorient.to_canonical(result.labels)


def _ras_image(result):
    ras = result.grid.reorient.to_canonical(np.asarray(result.image.data, dtype=np.float32))
    return ras, result.grid.reorient.canonical_affine


def _dataset_json(root: Path, n_cases: int, modality: str, with_ignore: bool) -> None:
    labels = {"background": 0, "lpm_right": 1, "lpm_left": 2}
    if with_ignore:
        labels["ignore"] = IGNORE  # nnU-Net v2: excluded from the loss, must be the highest value
    data = {"channel_names": {"0": "CT" if modality == "ct" else "MRI"}, "labels": labels,
            "numTraining": n_cases, "file_ending": ".nii.gz", "name": "LPMnnsam2"}
    atomic_write_json(root / "dataset.json", data)


def _save_case(root: Path, case: str, ras_image, labels: np.ndarray) -> None:
    import nibabel as nib

    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    array, affine = ras_image
    nib.save(nib.Nifti1Image(array.astype(np.float32), affine), str(root / "imagesTr" / f"{case}_0000.nii.gz"))
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), str(root / "labelsTr" / f"{case}.nii.gz"))


def _round_one_dataset(root: Path, cases, results, ras_images, modality) -> dict:
    if root.exists():
        shutil.rmtree(root)
    # the failure signal's quality (IoU x agreement with the aligned support, 0 where a side failed)
    sums = np.concatenate([r.checks.quality.sum(axis=1) for r in results])
    threshold = selection.iou_threshold(sums)
    kept_cases, log = [], []
    for case, result in zip(cases, results):
        quality = result.checks.quality.sum(axis=1)
        keep = (quality >= threshold) & ~result.checks.failed.any(axis=1)  # per RAS axial slice
        log.append({"case": case, "image": str(result.image.path), "kept_slices_ras": np.flatnonzero(keep).tolist()})
        if not keep.any():
            continue
        labels = _ras_labels(result).copy()
        labels[:, :, ~keep] = IGNORE
        _save_case(root, case, ras_images[case], labels)
        kept_cases.append(case)
    _dataset_json(root, len(kept_cases), modality, with_ignore=True)
    return {"root": root, "cases": kept_cases, "log": {"quality_sum_threshold": threshold, "cases": log}}


def _next_round_dataset(root: Path, cases, predictions, selected, ras_images, modality) -> dict:
    if root.exists():
        shutil.rmtree(root)
    for case in selected:
        _save_case(root, case, ras_images[case], predictions[case])
    _dataset_json(root, len(selected), modality, with_ignore=False)
    return {"root": root, "cases": list(selected)}


def _train_round(request: LpmTrainRequest, dataset: Path, round_dir: Path):
    from segkit.engines.nnunet.train import TrainRequest, train

    result = train(TrainRequest(
        data=dataset, output=round_dir, configuration="3d_fullres", fold="all", epochs=request.epochs,
        iterations_per_epoch=request.iterations_per_epoch, val_iterations_per_epoch=request.val_iterations_per_epoch,
        device=request.device, seed=request.seed, orientation=orientation(TASK), mirroring=False,  # right and left labels: no flips
        unet_width=request.unet_width,
    ))
    return Path(result.model_dir), Path(result.zip_path)


def _predict_all(spec, model_dir: Path, ras_images: dict, folder: Path, device: str = "auto") -> dict:
    """Each case segmented by the round's model, loaded once (RAS arrays; files written for the log)."""
    import nibabel as nib

    from segkit.tasks.base import Case
    from segkit.tasks.common_options import SegmentCommon
    from segkit.tasks.nnunet.options import SegmentOptions
    from segkit.tasks.nnunet.task import NnunetRunner

    folder.mkdir(parents=True, exist_ok=True)
    # torch: a round's model predicts these few images once; an ONNX export would cost more than it saves
    runner = NnunetRunner(spec, SegmentOptions(model=model_dir, backend="torch"), SegmentCommon(device=device))
    paths = {}
    for case, (array, affine) in ras_images.items():
        paths[case] = folder / f"{case}.nii.gz"
        nib.save(nib.Nifti1Image(array, affine), str(paths[case]))
    predictions = {}
    for case, prediction in zip(paths, runner.predict_many([Case((p,)) for p in paths.values()])):
        labels = np.zeros(prediction.reference.shape, dtype=np.uint8)
        for out in prediction.outputs:
            labels[out.mask > 0] = out.value
        predictions[case] = labels
        paths[case].unlink()
        nib.save(nib.Nifti1Image(labels, ras_images[case][1]), str(folder / f"{case}_seg.nii.gz"))
    return predictions


def _write_log(path: Path, rows: list[dict]) -> None:
    columns = ["case", "max_area_ratio", "dice_vs_previous", "smooth", "agrees", "kept", "reason"]
    lines = ["\t".join(columns)] + ["\t".join(str(round(r[c], 4) if isinstance(r[c], float) else r[c]) for c in columns) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")
