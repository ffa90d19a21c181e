"""`segkit quantify` end to end: rows per subject and label, measures, manifest and user errors."""

from __future__ import annotations

import csv
import io
import json

import nibabel as nib
import numpy as np
import pytest

from segkit.cli.main import run

AFFINE = np.diag([0.8, 0.8, 1.5, 1.0])


def _save(path, data, dtype=np.uint8):
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=dtype), AFFINE), str(path))
    return str(path)


def _mask():
    mask = np.zeros((12, 12, 8), np.uint8)
    mask[2:6, 2:6, 1:4] = 1
    mask[8:10, 8:10, 5:7] = 2
    return mask


def _rows(text, delimiter="\t"):
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


def test_volume_is_the_default_with_one_row_per_subject_and_label(tmp_path, capsys):
    a = _save(tmp_path / "sub-01.nii.gz", _mask())
    b = _save(tmp_path / "sub-02.nii.gz", np.zeros((12, 12, 8)))
    run(["quantify", "-m", a, "-m", b])
    out = capsys.readouterr()
    rows = _rows(out.out)
    assert [(r["subject"], r["label"], r["status"]) for r in rows] == [
        ("sub-01", "1", "ok"), ("sub-01", "2", "ok"), ("sub-02", "1", "empty")]
    assert float(rows[0]["volume_ml"]) == pytest.approx(48 * 0.96 / 1000)
    assert rows[2]["volume_ml"] == "" and out.err == ""


def test_intensity_with_window_and_fat_ratio_from_dixon(tmp_path, capsys):
    mask = _mask()
    image = np.arange(mask.size, dtype=np.float32).reshape(mask.shape)
    fat = np.full(mask.shape, 30.0)
    water = np.full(mask.shape, 70.0)
    m = _save(tmp_path / "m.nii.gz", mask)
    run(["quantify", "-m", m, "-i", _save(tmp_path / "i.nii.gz", image, np.float32), "--intensity",
         "--hu-window", "0,500", "--fat-ratio", "--fat", _save(tmp_path / "f.nii.gz", fat, np.float32),
         "--water", _save(tmp_path / "w.nii.gz", water, np.float32), "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["ff_mean"] == pytest.approx(0.3) and rows[0]["ff_pooled"] == pytest.approx(0.3)
    values = image[mask == 1]
    values = values[values <= 500]
    assert rows[0]["n_voxels"] == values.size and rows[0]["mean"] == pytest.approx(values.mean())
    assert "volume_ml" not in rows[0]  # --volume not asked for


def test_lesions_rows_and_manifest(tmp_path, capsys):
    lesion = (_mask() > 0).astype(np.uint8)
    _save(tmp_path / "les.nii.gz", lesion)
    manifest = tmp_path / "subjects.csv"
    manifest.write_text("subject,mask\nP1,les.nii.gz\n")
    run(["quantify", "--manifest", str(manifest), "--lesions", "--format", "csv"])
    rows = _rows(capsys.readouterr().out, ",")
    assert [(r["subject"], r["lesion"]) for r in rows] == [("P1", "1"), ("P1", "2")]
    assert float(rows[0]["length_si_mm"]) == pytest.approx(4.5)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--fat-ratio"], "--fat-ratio needs"),
        (["--intensity"], "--intensity needs an image"),
        (["--lesions"], "must be binary"),
        (["--hu-window", "5,1", "--intensity", "-i", "MASK"], "LO must not exceed HI"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, extra, message):
    m = _save(tmp_path / "m.nii.gz", _mask())
    with pytest.raises(SystemExit) as exc:
        run(["quantify", "-m", m] + [m if e == "MASK" else e for e in extra])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and err.count("\n") == 1


def test_empty_manifest_and_mismatched_image(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("mask\n")
    with pytest.raises(SystemExit) as exc:
        run(["quantify", "--manifest", str(manifest)])
    assert exc.value.code == 2 and "no subjects" in capsys.readouterr().err
    m = _save(tmp_path / "m.nii.gz", _mask())
    other = _save(tmp_path / "i.nii.gz", np.zeros((12, 12, 9)), np.float32)
    with pytest.raises(SystemExit):
        run(["quantify", "-m", m, "-i", other, "--intensity"])
    assert "differs from the mask" in capsys.readouterr().err
