"""Smoke tests of examples/: every example runs at reduced sizes, and its real outputs are checked
(files, geometry, non-empty masks, Dice against the phantom's truth where that is cheap, tables
that parse and agree with the masks they describe).

Shell examples run as a user would run them: `bash examples/X.sh OUT`, with this venv's `segkit`
and `python` first on PATH. The medsam examples share one SEGKIT_HOME, so LiteMedSAM's ONNX
encoder is exported once for the module. The Python API example runs in this process, so the
test can count how often the model is loaded.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
VENV_BIN = Path(sys.executable).parent
LITEMEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"

pytestmark = pytest.mark.slow  # each example runs real models or training on CPU


def data(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / float(total)


def mni_t1() -> tuple[np.ndarray, np.ndarray]:
    import nilearn.datasets

    image = nib.load(nilearn.datasets.MNI152_FILE_PATH)
    return np.asarray(image.dataobj, dtype=np.float64), image.affine


def tsv_rows(text: str, delimiter: str = "\t") -> list[dict]:
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


@pytest.fixture(scope="module")
def medsam_home(tmp_path_factory) -> Path:
    """One segkit cache for the medsam examples (the ONNX export is made once)."""
    return tmp_path_factory.mktemp("examples_home")


def run_example(script: str, out: Path, home: Path, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "SEGKIT_HOME": str(home), "DEVICE": "cpu", "OMP_NUM_THREADS": "2", **env}
    for name in ("SEGKIT_MIRROR", "SEGKIT_REGISTRY"):
        full_env.pop(name, None)
    done = subprocess.run(["bash", str(EXAMPLES / script), str(out)], env=full_env, capture_output=True,
                          encoding="utf-8", timeout=1200)
    assert done.returncode == 0, f"{script} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_every_example_has_a_readme_line_and_a_test():
    """No example without its one-line README entry and a test in this module."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Examples", 1)[1].split("\n## ", 1)[0]
    this_module = Path(__file__).read_text(encoding="utf-8")
    scripts = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh"))
    assert len(scripts) == 7
    for name in scripts:
        assert f"examples/{name}" in section, f"{name} has no line in the README's Examples section"
        assert f'"{name}"' in this_module, f"{name} is not run by tests/test_examples.py"


def test_shell_examples_are_strict_bash():
    for script in sorted(EXAMPLES.glob("*.sh")):
        text = script.read_text(encoding="utf-8")
        assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text, script.name
        syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, encoding="utf-8")
        assert syntax.returncode == 0, syntax.stderr


# ----------------------------------------------------------------------------------------- 01


def test_01_medsam_api_loads_the_model_once_for_three_calls(tmp_path, medsam_home, monkeypatch, capsys):
    from segkit.tasks import base
    from segkit.tasks.medsam.task import MedsamRunner

    monkeypatch.setenv("SEGKIT_HOME", str(medsam_home))
    monkeypatch.delenv("SEGKIT_REGISTRY", raising=False)
    monkeypatch.setattr(base, "_LOADED_MODELS", {})  # models another test left loaded do not count
    loads = []
    original = MedsamRunner.load_model
    monkeypatch.setattr(MedsamRunner, "load_model", lambda self: loads.append(1) or original(self))

    spec = importlib.util.spec_from_file_location("example_01", EXAMPLES / "01_medsam_api.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    masks = example.main(["-o", str(tmp_path), "--slices", "2", "--device", "cpu"])

    assert len(loads) == 1  # three segment calls, one model load
    printed = capsys.readouterr().out
    assert printed.count(" s -> ") == 3
    t1, _ = mni_t1()
    got = {name: data(path) > 0 for name, path in masks.items()}
    for side, name in (("left", "left_ventricle"), ("right", "right_ventricle")):
        i0, j0, k0, i1, j1, k1 = (int(v) for v in example.box(side, 2).split(","))
        mask = got[name]
        assert mask.shape == t1.shape and mask.any(), name
        idx = np.argwhere(mask)
        assert set(idx[:, 2]) <= {k0, k1}  # only the boxed slices
        assert idx[:, 0].min() >= i0 - 3 and idx[:, 0].max() <= i1 + 3, name  # in the box, give or take
        assert idx[:, 1].min() >= j0 - 3 and idx[:, 1].max() <= j1 + 3, name  # LiteMedSAM's 256-grid rounding
        # ventricles are CSF: dark on T1, clearly darker than their box on average
        box_mean = t1[i0 : i1 + 1, j0 : j1 + 1, k0 : k1 + 1].mean()
        assert t1[mask].mean() < box_mean - 20, name
        sidecar = json.loads(masks[name].with_suffix("").with_suffix(".json").read_text())
        assert sidecar["task"] == "medsam" and len(sidecar["prompts"]) == 1
    # two boxes in one call: the union of the two one-box results
    assert dice(got["both_ventricles"], got["left_ventricle"] | got["right_ventricle"]) >= 0.99


# ----------------------------------------------------------------------------------------- 02


def test_02_medsam_prompt_mask_and_box_mm(tmp_path, medsam_home):
    out = tmp_path / "out"
    run_example("02_medsam_prompts.sh", out, medsam_home, SLICES="2")
    t1, affine = mni_t1()
    stem = "mni_icbm152_t1_tal_nlin_sym_09a_converted_seg"

    coarse = data(out / "coarse_ventricles.nii.gz")
    assert set(np.unique(coarse)) == {0, 1, 2}
    from_mask = data(out / "from_mask" / f"{stem}.nii.gz") > 0
    sidecar = json.loads((out / "from_mask" / f"{stem}.json").read_text())
    # one box per coarse label: its bounding box, in voxels
    expected = []
    for label in (1, 2):
        idx = np.argwhere(coarse == label)
        expected.append((idx.min(axis=0).tolist(), idx.max(axis=0).tolist()))
    got = sorted((p["lo"], p["hi"]) for p in sidecar["prompts"])
    assert all(p["source"] == "prompt-mask" for p in sidecar["prompts"])
    assert got == sorted(expected)
    # the refined mask lies in the boxed slices and mostly on the dark CSF inside the coarse mask
    assert from_mask.any() and set(np.argwhere(from_mask)[:, 2]) <= {94, 95}
    assert dice(from_mask, (coarse > 0) & (t1 < 90)) >= 0.3

    from_mm = data(out / "from_mm" / f"{stem}.nii.gz") > 0
    [prompt] = json.loads((out / "from_mm" / f"{stem}.json").read_text())["prompts"]
    # the world box x -25..0, y -45..12, z 22..23 mm in voxels of this affine
    corners = np.linalg.inv(affine) @ np.array([[-25, -45, 22, 1], [0, 12, 23, 1]], dtype=float).T
    assert prompt["lo"] == np.rint(corners[:3].min(axis=1)).astype(int).tolist()
    assert prompt["hi"] == np.rint(corners[:3].max(axis=1)).astype(int).tolist()
    idx = np.argwhere(from_mm)
    assert from_mm.any() and set(idx[:, 2]) <= {94, 95}
    assert idx[:, 0].max() <= 98 + 3  # the left hemisphere (x < 0)


# ----------------------------------------------------------------------------------------- 03


def test_03_cc_fodf_phantoms_train_segment_quantify(tmp_path):
    out = tmp_path / "out"
    done = run_example(
        "03_cc_fodf_train_segment.sh", out, tmp_path / "home", N_TRAIN="2", SHAPE="30,34,26", VOXEL_MM="4",
        ARCH="unet", SLICE_SIZE="32", WIDTH="0.0625", EPOCHS="1", ITERATIONS="3", BATCH="8",
    )
    dwi = nib.load(str(out / "test" / "sub-100_dwi.nii.gz"))
    mask_img = nib.load(str(out / "seg" / "sub-100_dwi_cc_seg.nii.gz"))
    assert dwi.shape[:3] == (30, 34, 26) and dwi.ndim == 4
    assert mask_img.shape == dwi.shape[:3]
    np.testing.assert_allclose(mask_img.affine, dwi.affine, atol=1e-6)
    mask = np.asarray(mask_img.dataobj)
    assert set(np.unique(mask)) <= {0, 1} and mask.any()
    assert nib.load(str(out / "seg" / "sub-100_dwi_peaks.nii.gz")).shape == dwi.shape[:3] + (9,)

    card = json.loads((out / "run" / "model" / "model_card.json").read_text())
    sidecar = json.loads((out / "seg" / "sub-100_dwi_cc_seg.json").read_text())
    assert sidecar["peaks_source"] == "dwi" and sidecar["model"]["sha256"] == card["weights"]["sha256"]
    assert (out / "run" / "cc_fodf_model.zip").is_file()

    # quantify --cc: the volume it reports is the mask's
    [row] = tsv_rows((out / "cc_measures.tsv").read_text())
    voxel_ml = abs(np.linalg.det(mask_img.affine[:3, :3])) / 1000.0
    assert float(row["volume_ml"]) == pytest.approx(mask.sum() * voxel_ml, rel=1e-6)
    assert float(row["midsagittal_area_mm2"]) > 0
    # eval against the phantom's true CC: the Dice it reports is the masks' (a smoke-sized model
    # is not accurate; the full-size run is the README's)
    [scores] = tsv_rows((out / "cc_eval.tsv").read_text())
    truth = data(out / "test" / "sub-100_cc.nii.gz")
    assert float(scores["dice"]) == pytest.approx(dice(mask, truth), abs=1e-9)
    assert "val Dice" in done.stderr


# ----------------------------------------------------------------------------------------- 04


def test_04_lpm_fewshot_then_volume_hu_and_fat_fraction(tmp_path, medsam_home):
    out = tmp_path / "out"
    done = run_example("04_lpm_fewshot_quantify.sh", out, medsam_home, SLICES="4")
    truth_labels = data(out / "target" / "t21_seg.nii.gz")
    truth = json.loads((out / "target" / "t21_truth.json").read_text())
    for value, name in ((1, "lpm_right"), (2, "lpm_left")):
        mask = data(out / "seg" / f"t21_ct_{name}_seg.nii.gz")
        assert mask.shape == truth_labels.shape
        assert dice(mask, truth_labels == value) >= 0.7, name
    iou = tsv_rows((out / "seg" / "t21_ct_lpm_iou.tsv").read_text())
    assert len(iou) == 4 and all(0.0 < float(r["iou_lpm_right"]) <= 1.0 for r in iou)

    rows = tsv_rows((out / "lpm_measures.tsv").read_text())
    assert [r["subject"] for r in rows] == ["t21_ct_lpm_right_seg", "t21_ct_lpm_left_seg"]
    for row, name in zip(rows, ("lpm_right", "lpm_left")):
        assert abs(float(row["volume_ml"]) - truth[name]["volume_ml"]) / truth[name]["volume_ml"] < 0.25
        assert abs(float(row["mean_hu"]) - truth[name]["mean_hu"]) < 15.0
        assert abs(float(row["fat_fraction"]) - truth[name]["fat_fraction"]) < 0.05
    assert "phantom truth" in done.stdout


# ----------------------------------------------------------------------------------------- 05


def test_05_eval_a_folder_to_csv(tmp_path):
    out = tmp_path / "out"
    run_example("05_eval_folder.sh", out, tmp_path / "home", CASES="3", SLICES="4")
    rows = list(csv.DictReader((out / "eval.csv").open(newline="")))
    cases = [r for r in rows if r["case"].startswith("case")]
    assert sorted((r["case"], r["label"]) for r in cases) == [(f"case{s:03d}", lab) for s in (40, 41, 42) for lab in "12"]
    for row in cases:
        pred = data(out / "preds" / f"{row['case']}.nii.gz")
        ref = data(out / "refs" / f"{row['case']}.nii.gz")
        label = int(row["label"])
        assert row["status"] == "ok"
        assert float(row["dice"]) == pytest.approx(dice(pred == label, ref == label), abs=1e-9)
    for label in "12":
        [mean] = [r for r in rows if r["case"] == "mean" and r["label"] == label]
        assert float(mean["dice"]) == pytest.approx(np.mean([float(r["dice"]) for r in cases if r["label"] == label]))


# ----------------------------------------------------------------------------------------- 06


def test_06_offline_install_through_a_mirror_folder(tmp_path):
    out = tmp_path / "out"
    done = run_example("06_offline_mirror.sh", out, tmp_path / "unused_home")
    assert "tampered mirror refused" in done.stdout and "sha256" in done.stdout
    home = out / "segkit_home"  # the example's own cache
    manifest = json.loads((home / "tasks" / "medsam" / "manifest.json").read_text())
    [entry] = manifest["files"]
    mirror_url = (out / "mirror" / "lite_medsam.pth").resolve().as_uri()
    assert entry["url"] == mirror_url and entry["sha256"] == LITEMEDSAM_SHA256
    installed = home / "tasks" / "medsam" / "lite_medsam.pth"
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == LITEMEDSAM_SHA256

    stem = "mni_icbm152_t1_tal_nlin_sym_09a_converted_seg"
    mask = data(out / "seg" / f"{stem}.nii.gz") > 0
    assert mask.any() and set(np.argwhere(mask)[:, 2]) == {95}
    sidecar = json.loads((out / "seg" / f"{stem}.json").read_text())
    assert sidecar["model"]["url"] == mirror_url and sidecar["model"]["sha256"] == LITEMEDSAM_SHA256
    assert not (tmp_path / "unused_home").exists()  # the example kept to its own cache


# ----------------------------------------------------------------------------------------- 07


def test_07_custom_nnunet_zip_registered_and_used(tmp_path):
    pytest.importorskip("nnunetv2")
    out = tmp_path / "out"
    done = run_example("07_custom_nnunet.sh", out, tmp_path / "unused_home", CASES="6", EPOCHS="1", ITERATIONS="2")
    zip_path = Path(next(line.split("\t", 1)[1] for line in done.stdout.splitlines() if line.startswith("zip\t")))
    assert zip_path.is_file() and zip_path.is_relative_to(out)
    assert "my_nodules" in (out / "segkit_home" / "local_tasks.yaml").read_text()

    image = nib.load(str(out / "test" / "case1000.nii.gz"))
    mask_img = nib.load(str(out / "seg" / "case1000_nodule_seg.nii.gz"))  # the label name from dataset.json
    assert mask_img.shape == image.shape and np.array_equal(mask_img.affine, image.affine)
    mask = np.asarray(mask_img.dataobj)
    assert set(np.unique(mask)) <= {0, 1}
    sidecar = json.loads((out / "seg" / "case1000_nodule_seg.json").read_text())
    assert sidecar["task"] == "my_nodules" and sidecar["framework"] == "nnunetv2"
    assert sidecar["model_sha256"] == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    # the eval line the example prints is the Dice of the mask it wrote
    [scores] = tsv_rows(done.stdout[done.stdout.index("label\tstatus"):].split("outputs in")[0])
    assert float(scores["dice"]) == pytest.approx(dice(mask, data(out / "test" / "case1000_truth.nii.gz")), abs=1e-9)
    assert not (tmp_path / "unused_home").exists()
