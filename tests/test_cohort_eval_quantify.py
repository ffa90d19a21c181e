"""Cohort input of `eval` and `quantify` (issue 16): --bids DIR and --glob, on a tiny BIDS tree of
real NIfTI files built here; every number is checked against what the single-case command gives
for the same files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.cli.main import run

AFFINE = np.diag([0.8, 0.8, 1.5, 1.0])
# (subject, session or None): one subject without sessions, one with two
SCANS = (("01", None), ("02", "1"), ("02", "2"))


def _save(path: Path, data, dtype=np.uint8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=dtype), AFFINE), str(path))
    return path


def _scan_name(subject: str, session: str | None) -> tuple[Path, str]:
    folder = Path(f"sub-{subject}") / (f"ses-{session}" if session else "") / "anat"
    return folder, f"sub-{subject}" + (f"_ses-{session}" if session else "") + "_T2w"


@pytest.fixture
def study(tmp_path):
    """raw images, segkit's masks (derivatives/segkit, suffix sc_seg) and manual labels
    (derivatives/labels, suffix seg-manual), each scan a little different."""
    root = tmp_path / "study"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    files = {}
    for i, (subject, session) in enumerate(SCANS):
        folder, name = _scan_name(subject, session)
        rng = np.random.default_rng(i)
        image = rng.normal(100.0 + 10 * i, 5.0, (16, 14, 8)).astype(np.float32)
        ref = np.zeros((16, 14, 8), np.uint8)
        ref[4:10, 4:9, 2:6] = 1
        ref[12:14, 10:12, 1:3] = 2
        pred = np.zeros_like(ref)
        pred[4 + i:11, 4:9, 2:6 + (i % 2)] = 1
        files[name] = {
            "image": _save(root / folder / f"{name}.nii.gz", image, np.float32),
            "pred": _save(root / "derivatives" / "segkit" / folder / f"{name}_sc_seg.nii.gz", pred),
            "ref": _save(root / "derivatives" / "labels" / folder / f"{name}_seg-manual.nii.gz", ref),
        }
    (root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T1w.nii.gz").write_bytes(b"not read")  # another suffix
    return root, files


def _table(argv, capsys) -> list[dict]:
    run(argv)
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out), delimiter="\t"))


def _refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        run(argv)
    err = capsys.readouterr()
    assert exc.value.code == 2 and err.out == ""
    lines = err.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segkit: error: "), err.err
    return lines[0]


def test_eval_bids_pairs_derivatives_with_labels_and_matches_single_case_numbers(study, capsys):
    root, files = study
    rows = _table(["eval", "--bids", str(root), "--seg-suffix", "sc_seg"], capsys)
    cases = [r for r in rows if r["status"] != "summary"]
    assert sorted({r["case"] for r in cases}) == sorted(files)
    assert {r["case"] for r in rows if r["status"] == "summary"} == {"mean", "std_ddof1", "median"}
    for name, paths in files.items():
        single = _table(["eval", "--pred", str(paths["pred"]), "--ref", str(paths["ref"])], capsys)
        mine = [r for r in cases if r["case"] == name]
        assert len(single) == 2 and len(mine) == 2  # labels 1 and 2
        assert [{k: r[k] for k in single[0]} for r in mine] == single  # every metric identical
        assert {k: v for r in mine for k, v in r.items() if k != "case" and k not in single[0] and v} == {}
    dice = {r["case"]: float(r["dice"]) for r in cases if r["label"] == "1"}
    assert len(set(dice.values())) == 3 and all(0 < d <= 1 for d in dice.values())


def test_eval_bids_narrowed_by_participant_and_session(study, capsys):
    root, _ = study
    rows = _table(["eval", "--bids", str(root), "--seg-suffix", "_sc_seg", "--participant-label", "sub-02",
                   "--session", "1", "--no-summary", "--metrics", "dice"], capsys)
    assert [(r["case"], r["label"]) for r in rows] == [("sub-02_ses-1_T2w", "1"), ("sub-02_ses-1_T2w", "2")]
    rows = _table(["eval", "--bids", str(root), "--seg-suffix", "sc_seg", "--participant-label", "01,02",
                   "--no-summary", "--metrics", "dice"], capsys)
    assert len(rows) == 6


def test_eval_bids_with_other_label_folder_and_suffix(study, capsys):
    root, files = study
    for name, paths in files.items():  # the references moved: derivatives/manual, suffix label-SC_mask
        target = root / "derivatives" / "manual" / paths["ref"].relative_to(root / "derivatives" / "labels")
        target.parent.mkdir(parents=True, exist_ok=True)
        paths["ref"].rename(target.with_name(f"{name}_label-SC_mask.nii.gz"))
    rows = _table(["eval", "--bids", str(root), "--seg-suffix", "sc_seg", "--ref-derivative", "manual",
                   "--ref-suffix", "label-SC_mask", "--no-summary", "--metrics", "dice"], capsys)
    assert sorted({r["case"] for r in rows}) == sorted(files)


def test_eval_glob_pairs_predictions_with_ref_dir(study, tmp_path, capsys):
    root, files = study
    refs = tmp_path / "refs"
    refs.mkdir()
    for name, paths in files.items():
        (refs / f"{name}_seg-manual.nii.gz").write_bytes(paths["ref"].read_bytes())
    pattern = str(root / "derivatives" / "segkit" / "**" / "*_sc_seg.nii.gz")
    rows = _table(["eval", "--glob", pattern, "--ref-dir", str(refs), "--seg-suffix", "sc_seg",
                   "--ref-suffix", "seg-manual", "--no-summary"], capsys)
    paths = files["sub-02_ses-2_T2w"]
    single = _table(["eval", "--pred", str(paths["pred"]), "--ref", str(paths["ref"])], capsys)
    assert [{k: v for k, v in r.items() if k != "case"} for r in rows if r["case"] == "sub-02_ses-2_T2w"] == single
    assert len(rows) == 6


def test_quantify_bids_reads_masks_and_the_raw_images_they_came_from(study, capsys):
    root, files = study
    rows = _table(["quantify", "--bids", str(root), "--seg-suffix", "sc_seg", "--intensity", "--volume"], capsys)
    assert sorted({r["subject"] for r in rows}) == sorted(files)
    for name, paths in files.items():
        single = _table(["quantify", "-m", str(paths["pred"]), "-i", str(paths["image"]), "--intensity", "--volume"],
                        capsys)
        mine = [{k: v for k, v in r.items() if k != "subject"} for r in rows if r["subject"] == name]
        assert mine == [{k: v for k, v in r.items() if k != "subject"} for r in single] and len(single) == 1
    means = {r["subject"]: float(r["mean"]) for r in rows}
    assert means["sub-01_T2w"] < means["sub-02_ses-1_T2w"] < means["sub-02_ses-2_T2w"]  # each its own image


def test_quantify_glob_takes_the_image_from_the_segkit_sidecar(study, capsys):
    root, files = study
    paths = files["sub-02_ses-1_T2w"]
    sidecar = paths["pred"].with_name("sub-02_ses-1_T2w_sc_seg.json")
    sidecar.write_text(json.dumps({"tool": "segkit", "inputs": [str(paths["image"].resolve())]}))
    pattern = str(root / "derivatives" / "segkit" / "sub-02" / "ses-1" / "anat" / "*_sc_seg.nii.gz")
    rows = _table(["quantify", "--glob", pattern, "--intensity"], capsys)
    single = _table(["quantify", "-m", str(paths["pred"]), "-i", str(paths["image"]), "--intensity"], capsys)
    assert rows == single and float(rows[0]["mean"]) > 0
    volumes = _table(["quantify", "--glob", str(root / "derivatives" / "**" / "*_sc_seg.nii.gz")], capsys)
    assert len(volumes) == 3 and {r["subject"] for r in volumes} == {f"{n}_sc_seg" for n in files}


def _dixon(root: Path, files: dict) -> None:
    """Each scan's Dixon fat and water images beside it (sub-01_fat.nii.gz for sub-01_T2w), each scan a
    different fat share, and a cord mask beside each segkit mask (the lesion mask is sc_seg's)."""
    for i, (name, paths) in enumerate(files.items()):
        folder, entities = paths["image"].parent, name.rpartition("_")[0]
        rng = np.random.default_rng(10 + i)
        water = rng.uniform(80, 120, (16, 14, 8))
        paths["fat"] = _save(folder / f"{entities}_fat.nii.gz", water * (0.1 + 0.2 * i), np.float32)
        paths["water"] = _save(folder / f"{entities}_water.nii.gz", water, np.float32)
        cord = np.zeros((16, 14, 8), np.uint8)
        cord[3:13, 3:11, :] = 1
        paths["cord"] = _save(paths["pred"].with_name(f"{name}_cord_seg.nii.gz"), cord)


def test_quantify_bids_finds_dixon_images_and_cord_masks_by_suffix(study, capsys):
    root, files = study
    _dixon(root, files)
    rows = _table(["quantify", "--bids", str(root), "--seg-suffix", "sc_seg", "--fat-suffix", "fat",
                   "--water-suffix", "water"], capsys)  # the suffixes imply --fat-ratio
    assert sorted({r["subject"] for r in rows}) == sorted(files)
    for name, paths in files.items():
        single = _table(["quantify", "-m", str(paths["pred"]), "--fat", str(paths["fat"]), "--water",
                         str(paths["water"]), "--fat-ratio"], capsys)
        mine = [{k: v for k, v in r.items() if k != "subject"} for r in rows if r["subject"] == name]
        assert mine == [{k: v for k, v in r.items() if k != "subject"} for r in single] and len(single) == 1
    assert {r["ff_source"] for r in rows} == {"dixon"}
    ratios = {r["subject"]: float(r["ff_mean"]) for r in rows}
    assert ratios["sub-01_T2w"] < ratios["sub-02_ses-1_T2w"] < ratios["sub-02_ses-2_T2w"]  # each its own images
    lesions = _table(["quantify", "--bids", str(root), "--seg-suffix", "sc_seg", "--lesions", "--cord-suffix",
                      "cord_seg"], capsys)
    for name, paths in files.items():
        single = _table(["quantify", "-m", str(paths["pred"]), "--lesions", "--cord", str(paths["cord"])], capsys)
        assert [{k: v for k, v in r.items() if k != "subject"} for r in lesions if r["subject"] == name] == [
            {k: v for k, v in r.items() if k != "subject"} for r in single]
    files["sub-01_T2w"]["water"].unlink()
    assert "sub-01_water.nii.gz is not in the BIDS dataset" in _refused(
        ["quantify", "--bids", str(root), "--seg-suffix", "sc_seg", "--fat-suffix", "fat", "--water-suffix", "water"],
        capsys)


@pytest.mark.parametrize("argv, expect", [
    (["eval", "--bids", "{root}"], "--seg-suffix"),
    (["eval", "--bids", "{root}", "--seg-suffix", "sc_seg", "--participant-label", "07"], "participant(s) 07"),
    (["eval", "--bids", "{root}/sub-01", "--seg-suffix", "sc_seg"], "not a BIDS dataset"),
    (["eval", "--manifest", "{root}/x.csv", "--participant-label", "01"], "--participant-label goes with --bids"),
    (["eval", "--bids", "{root}", "--glob", "*.nii.gz", "--seg-suffix", "sc_seg"], "--bids or --glob, not both"),
    (["eval", "--bids", "{root}", "--seg-suffix", "sc_seg", "--pred-dir", "{root}"], "exactly one input"),
    (["eval", "--glob", "{root}/derivatives/segkit/**/*.nii.gz"], "--ref-dir"),
    (["eval", "--bids", "{root}", "--seg-suffix", "sc_seg", "--ref-derivative", "nope"], "no such derivatives folder"),
    (["quantify", "--bids", "{root}", "--seg-suffix", "sc_seg", "-m", "{root}/m.nii.gz"], "leave out -m"),
    (["quantify", "--bids", "{root}", "--seg-suffix", "t1_seg"], "no '_t1_seg' masks"),
    (["quantify", "--glob", "{root}/derivatives/**/*_sc_seg.nii.gz", "--intensity"], "no segkit sidecar"),
    (["quantify", "--seg-suffix", "sc_seg", "-m", "{root}/m.nii.gz"], "--seg-suffix goes with --bids"),
    (["quantify", "-m", "{root}/m.nii.gz", "--fat-suffix", "fat"], "--fat-suffix goes with --bids"),
])
def test_bad_cohort_input_is_one_line_exit_2(study, capsys, argv, expect):
    root, _ = study
    assert expect in _refused([a.replace("{root}", str(root)) for a in argv], capsys)


def test_a_reference_without_prediction_is_refused(study, capsys):
    root, files = study
    files["sub-02_ses-2_T2w"]["pred"].unlink()
    assert "no prediction for 1 reference(s), e.g. 'sub-02_ses-2_T2w'" in _refused(
        ["eval", "--bids", str(root), "--seg-suffix", "sc_seg"], capsys)


def test_quantify_bids_intensity_needs_the_raw_image(study, capsys):
    root, files = study
    files["sub-01_T2w"]["image"].unlink()
    assert "its image" in _refused(["quantify", "--bids", str(root), "--seg-suffix", "sc_seg", "--intensity"], capsys)
    rows = _table(["quantify", "--bids", str(root), "--seg-suffix", "sc_seg"], capsys)  # volumes need no image
    assert len(rows) == 3 and all(int(r["voxel_count"]) > 0 for r in rows)


@pytest.mark.parametrize("command, options", [
    ("eval", ["--bids", "--participant-label", "--session", "--datatype", "--seg-suffix", "--seg-derivative",
              "--ref-suffix", "--ref-derivative", "--glob"]),
    ("quantify", ["--bids", "--participant-label", "--session", "--datatype", "--seg-suffix", "--seg-derivative",
                  "--glob", "--fat-suffix", "--water-suffix", "--ff-suffix", "--cord-suffix"]),
])
def test_help_lists_the_cohort_options(command, options, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    try:
        run([command, "--help"])
    except SystemExit as exc:
        assert not exc.code
    text = capsys.readouterr().out
    assert [o for o in options if o not in text] == []
