"""`segkit train -task lpm_nnsam2` end to end on CPU (slow): LiteMedSAM pseudo-labels from one annotated
slice, two nnU-Net rounds without mirroring, selection logs, and the trained model on held-out phantoms.

CT phantoms 80x64x6 at 1.5x1.5x4 mm (where the pseudo-labels reach Dice >= 0.8), at three sizes:

- CI (`PLUMBING`, runs by default, about 4 CPU minutes): 5 phantoms, 2 rounds of 2 epochs x 5
  iterations of a quarter-width nnU-Net (`--unet-width 0.25`). Every path runs (pseudo-labels,
  top-decile selection with the ignore label, CT statistics from annotated voxels, no mirroring,
  round 2 on the selected cases, the package, `segment --model`); the model is not trained enough
  to be accurate, so no Dice is asserted on it.
- `REDUCED` (opt-in: `pytest -m fullsize`): 8 phantoms, 2 rounds x 6 epochs x 20 iterations at
  full width; the trained model's Dice per side on held-out phantoms must reach DICE_FLOOR
  (0.77 / 0.81 on 2026-12-01, about 1270 CPU s, which took 36 of CI's minutes on a loaded
  machine). Trained for 1 iteration per round it scores 0.04 / 0.08, for 4 epochs x 10
  iterations 0.18 / 0.52; at a quarter or half width (30 x 20 or 10 x 20) round 1 never finds both
  sides from its few annotated slices (0.64 / 0.31, 0.77 / 0.00). The trivial few-shot answer, the
  support's annotated slice copied to every slice (0.74 per side), is printed beside it.
- `FULLSIZE` (opt-in, results in benchmarks/README.md): 8 phantoms, 2 rounds x 15 epochs x 20
  iterations, and the issue's acceptance rule: the trained model's Dice per side is at least the
  pseudo-labels' Dice minus 0.05 (both against the phantoms' true labels).
- `VARIED` (opt-in, results in benchmarks/README.md): the same rule on 24 training and 6 held-out
  subjects placed like other patients: every training and held-out image shifted by up to 15 mm, rotated by up to 10 degrees
  in-plane, scaled 0.8-1.2, with its own pixel size (1.8-2.1 mm, so that nnU-Net's patch stays
  about the other sizes' 6x64x80), field of view (160-180 mm) and slice count (5-7 over the same
  24 mm), the support as in the other sizes. The pseudo-labels are worse on such subjects (about
  0.75-0.8 per side), so their floor here is 0.7.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lpm_baseline import copied_annotation
from lpm_cli import run_segkit
from segkit.phantoms.lumbar import Pose, make_lumbar_phantom, save_lumbar_phantom, single_slice_support

SHAPE, SPACING = (80, 64, 6), (1.5, 1.5, 4.0)  # nnU-Net patch 6x64x80
SIDES = {1: "lpm_right", 2: "lpm_left"}


@dataclass(frozen=True)
class Size:
    train_seeds: tuple[int, ...]
    rounds: int
    epochs: int
    iterations: int
    val_iterations: int
    unet_width: float = 1.0
    varied: bool = False  # subjects placed like other patients (see the docstring)
    held_out_seeds: tuple[int, ...] = (900, 901)


PLUMBING = Size(tuple(range(100, 105)), rounds=2, epochs=2, iterations=5, val_iterations=1, unet_width=0.25)
REDUCED = Size(tuple(range(100, 108)), rounds=2, epochs=6, iterations=20, val_iterations=1)
FULLSIZE = Size(tuple(range(100, 108)), rounds=2, epochs=15, iterations=20, val_iterations=2)  # 12.5 min, 2 quiet cores
# 24 subjects: with 8, round 1's top decile (6 frames) held no bottom slice and round 2 kept 2 subjects;
# 6 held out: with 2, one small subject decided the mean (benchmarks/README.md)
VARIED = Size(tuple(range(100, 124)), rounds=2, epochs=15, iterations=20, val_iterations=2, varied=True,
              held_out_seeds=tuple(range(900, 906)))
DICE_FLOOR = 0.5  # the reduced model's Dice per side (untrained: 0.04 / 0.08)


segkit = partial(run_segkit, timeout=7200)  # the opt-in sizes train for 12-80 min, more on a shared machine


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / total if total else 1.0


def subject(seed: int, varied: bool):
    """A phantom at the support's geometry, or (varied) one placed and imaged like another patient."""
    if not varied:
        return make_lumbar_phantom(seed, shape=SHAPE, spacing=SPACING)
    rng = np.random.default_rng(10_000 + seed)
    pose = Pose((rng.uniform(-15, 15), rng.uniform(-15, 15)), rng.uniform(-10, 10), rng.uniform(0.8, 1.2))
    pixel, fov, n_slices = rng.uniform(1.8, 2.1), rng.uniform(160, 180), int(rng.integers(5, 8))
    shape = (int(fov / pixel), int(0.85 * fov / pixel), n_slices)
    return make_lumbar_phantom(seed, shape=shape, spacing=(pixel, pixel, SHAPE[2] * SPACING[2] / n_slices), pose=pose)


def train_package(root: Path, size: Size) -> dict:
    support = make_lumbar_phantom(0, shape=SHAPE, spacing=SPACING)
    support_ct = save_lumbar_phantom(support, root, "sup")["ct"]
    support_mask = root / "sup_mask.nii.gz"
    nib.save(nib.Nifti1Image(single_slice_support(support.labels), support.affine), str(support_mask))
    images = root / "images"
    images.mkdir()
    for seed in size.train_seeds:
        phantom = subject(seed, size.varied)
        nib.save(nib.Nifti1Image(phantom.ct, phantom.affine), str(images / f"c{seed}.nii.gz"))
    held_out = {}
    for seed in size.held_out_seeds:
        phantom = subject(seed, size.varied)
        held_out[seed] = (save_lumbar_phantom(phantom, root / "held_out", f"h{seed}")["ct"], phantom)
    package = root / "pkg"
    done = segkit(
        "train", "-task", "lpm_nnsam2", "--images", str(images), "--support", str(support_ct),
        "--support-mask", str(support_mask), "--propagator", "litemedsam", "--rounds", str(size.rounds),
        "--epochs", str(size.epochs), "--iterations-per-epoch", str(size.iterations), "--val-iterations-per-epoch", str(size.val_iterations),
        "--unet-width", str(size.unet_width),
        "--seed", "0", "--device", "cpu", "-o", str(package), home=root / "home",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {"root": root, "size": size, "package": package, "support": support_ct, "support_mask": support_mask,
            "support_phantom": support, "held_out": held_out, "stderr": done.stderr}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_package(tmp_path_factory.mktemp("lpm_train"), PLUMBING)


@pytest.fixture(scope="module")
def trained_reduced(tmp_path_factory):
    return train_package(tmp_path_factory.mktemp("lpm_train_reduced"), REDUCED)


@pytest.fixture(scope="module")
def trained_fullsize(tmp_path_factory):
    return train_package(tmp_path_factory.mktemp("lpm_train_fullsize"), FULLSIZE)


@pytest.fixture(scope="module")
def trained_varied(tmp_path_factory):
    return train_package(tmp_path_factory.mktemp("lpm_train_varied"), VARIED)


def held_out_dice(trained: dict, kind: str, *how: str) -> dict[int, float]:
    """Mean Dice per side over the held-out phantoms of `segkit segment -task lpm_nnsam2 ... how`."""
    root = trained["root"]
    inputs = [arg for path, _ in trained["held_out"].values() for arg in ("-i", str(path))]
    result = segkit("segment", "-task", "lpm_nnsam2", *inputs, *how, "--device", "cpu", "-o", f"{root / kind}/",
                    home=root / "home")
    assert result.returncode == 0, result.stderr[-2000:]
    scores = {value: [] for value in SIDES}
    for seed, (path, phantom) in trained["held_out"].items():
        stem = Path(path).name.removesuffix(".nii.gz")
        for value, name in SIDES.items():
            image = nib.load(root / kind / f"{stem}_{name}_seg.nii.gz")
            assert image.shape == phantom.labels.shape and np.allclose(image.affine, phantom.affine)
            scores[value].append(dice(np.asarray(image.dataobj) > 0, phantom.labels == value))
        print(f"{kind} on subject {seed}: " + " / ".join(f"{scores[v][-1]:.3f}" for v in SIDES))
    return {value: float(np.mean(s)) for value, s in scores.items()}


def copied_support_dice(trained: dict) -> dict[int, float]:
    """The trivial few-shot baseline: the support's annotated slice copied to every slice of each
    target, by world coordinates (no registration)."""
    from segkit.tasks.lpm_nnsam2.align import Volume

    support = trained["support_phantom"]
    labels = single_slice_support(support.labels)
    (annotated,) = np.flatnonzero(labels.any(axis=(0, 1)))
    volume = Volume(support.ct, support.affine, "ct", labels)
    scores = {value: [] for value in SIDES}
    for _, phantom in trained["held_out"].values():
        copied = copied_annotation(volume, [int(annotated)], phantom.ct, phantom.affine, register=False)
        for value in SIDES:
            scores[value].append(dice(copied == value, phantom.labels == value))
    return {value: float(np.mean(s)) for value, s in scores.items()}


@pytest.mark.slow
def test_rounds_keep_models_selection_logs_and_the_ignore_label(trained):
    package, n_images = trained["package"], len(trained["size"].train_seeds)
    card = json.loads((package / "model_card.json").read_text())
    assert [r["round"] for r in card["rounds"]] == list(range(1, trained["size"].rounds + 1))
    for entry in card["rounds"]:
        assert (package / entry["model_zip"]).is_file()
        rows = list(csv.DictReader((package / entry["selection_log"]).open(), delimiter="\t"))
        assert len(rows) == n_images and sum(r["kept"] == "True" for r in rows) >= 2  # max(2, 20%)
        assert 0.0 <= entry["dice_vs_previous"] <= 1.0
    assert len(card["rounds"][1]["training_cases"]) >= 2
    # round 1: slices outside the top IoU decile carry the ignore label (3), declared in dataset.json
    dataset = package / "round_1" / "dataset"
    assert json.loads((dataset / "dataset.json").read_text())["labels"]["ignore"] == 3
    kept_slices = 0
    for path in (dataset / "labelsTr").iterdir():
        labels = np.asarray(nib.load(path).dataobj)
        assert set(np.unique(labels)) <= {0, 1, 2, 3}
        per_slice = [set(np.unique(labels[:, :, k])) for k in range(labels.shape[2])]
        assert all(s == {3} or 3 not in s for s in per_slice)  # a slice is kept whole or ignored whole
        kept_slices += sum(3 not in s for s in per_slice)
    assert 0 < kept_slices < n_images * SHAPE[2] * 0.2  # about the top decile
    assert json.loads((package / "round_2" / "dataset" / "dataset.json").read_text())["labels"].get("ignore") is None
    assert_ct_statistics_from_muscle(package)


def assert_ct_statistics_from_muscle(package: Path) -> None:
    """Round 1's CT normalisation statistics come from muscle voxels, not the ignore label (which
    would drag in the ignored slices' air and fat: mean -394 HU before segkit refit them). Later
    rounds count what the previous round's model labelled: at plumbing size that includes air."""
    card = json.loads((package / "model_card.json").read_text())
    for entry in card["rounds"]:
        plans = json.loads((Path(entry["model_dir"]) / "plans.json").read_text())
        stats = plans["foreground_intensity_properties_per_channel"]["0"]
        print(f"round {entry['round']} CT statistics: mean {stats['mean']:.1f}, 0.5th percentile {stats['percentile_00_5']:.1f} HU")
        if entry["round"] == 1:
            assert -20.0 < stats["mean"] < 80.0 and stats["percentile_00_5"] > -300.0, stats


@pytest.mark.slow
def test_every_round_trains_without_mirroring(trained):
    import torch

    for round_dir in sorted(trained["package"].glob("round_*")):
        assert "segkit: no mirroring" in (round_dir / "train.log").read_text(encoding="utf-8", errors="replace")
        (checkpoint_path,) = round_dir.glob("nnunet/nnUNet_results/*/*/fold_all/checkpoint_final.pth")
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        assert checkpoint["inference_allowed_mirroring_axes"] is None  # even --tta cannot swap the sides


@pytest.mark.slow
def test_the_package_segments_held_out_phantoms_in_their_own_geometry(trained):
    """The plumbing-size model: `segment --model PACKAGE` runs and writes both sides per phantom
    (held_out_dice checks shape and affine); its Dice is printed, not asserted (see the docstring)."""
    model = held_out_dice(trained, "model", "--model", str(trained["package"]))
    print("plumbing-size model, Dice per side:", {SIDES[v]: round(d, 3) for v, d in model.items()})


@pytest.mark.fullsize
def test_trained_model_segments_both_sides_of_held_out_phantoms(trained_reduced):
    trained = trained_reduced
    model = held_out_dice(trained, "model", "--model", str(trained["package"]))
    baseline = copied_support_dice(trained)
    for value, name in SIDES.items():
        print(f"{name}: trained model {model[value]:.3f}, support slice copied {baseline[value]:.3f}")
        assert model[value] >= DICE_FLOOR, f"{name}: model {model[value]:.3f} < {DICE_FLOOR}"


def assert_the_acceptance_rule(trained: dict, pseudo_floor: float = 0.75) -> None:
    """The trained model's Dice per side >= the pseudo-labels' Dice - 0.05, on the held-out phantoms."""
    support = ("--support", str(trained["support"]), "--support-mask", str(trained["support_mask"]))
    pseudo = held_out_dice(trained, "pseudo", *support, "--propagator", "litemedsam")
    model = held_out_dice(trained, "model", "--model", str(trained["package"]))
    baseline = copied_support_dice(trained)
    for value, name in SIDES.items():
        print(f"{name}: pseudo-labels {pseudo[value]:.3f}, trained model {model[value]:.3f}, "
              f"support slice copied {baseline[value]:.3f}")
        assert pseudo[value] >= pseudo_floor, f"{name}: pseudo-labels {pseudo[value]:.3f} (a floor, so the rule below means something)"
        assert model[value] >= pseudo[value] - 0.05, f"{name}: model {model[value]:.3f} < pseudo-labels {pseudo[value]:.3f} - 0.05"


@pytest.mark.fullsize
def test_fullsize_trained_model_reaches_the_pseudo_label_dice_on_held_out_phantoms(trained_fullsize):
    assert_the_acceptance_rule(trained_fullsize)


@pytest.mark.fullsize
def test_varied_subjects_trained_model_reaches_the_pseudo_label_dice(trained_varied):
    assert_ct_statistics_from_muscle(trained_varied["package"])
    assert_the_acceptance_rule(trained_varied, pseudo_floor=0.7)
