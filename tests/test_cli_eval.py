"""`segkit eval` end to end on tiny NIfTI files: tables, empties, geometry, batches, no torch."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from segkit.cli.main import run

AFFINE = np.diag([0.8, 0.8, 1.5, 1.0])


def _save(path, data, affine=AFFINE):
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.uint8), affine), str(path))
    return path


def _masks():
    ref = np.zeros((20, 20, 12), np.uint8)
    ref[5:12, 5:12, 3:8] = 1
    ref[14:17, 14:17, 2:5] = 2
    pred = np.zeros_like(ref)
    pred[6:13, 5:12, 3:9] = 1
    return ref, pred


def _run(argv, capsys):
    run(argv)
    return capsys.readouterr()


def _tsv(text):
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def test_single_pair_tsv_has_a_row_per_label_and_names_the_definition(tmp_path, capsys):
    ref, pred = _masks()
    out = _run(["eval", "--pred", str(_save(tmp_path / "p.nii.gz", pred)), "--ref", str(_save(tmp_path / "r.nii.gz", ref))], capsys)
    rows = _tsv(out.out)
    assert [r["label"] for r in rows] == ["1", "2"]
    assert rows[0]["status"] == "ok" and 0 < float(rows[0]["dice"]) < 1
    assert rows[0]["surface_definition"].startswith("surfel-area")
    assert rows[1]["status"] == "pred_empty" and rows[1]["hd95_mm"] == "" and rows[1]["nsd"] == "0.0"
    assert out.err == ""


def test_json_never_contains_nan_and_voxel_mode_is_named(tmp_path, capsys):
    ref, _ = _masks()
    empty = np.zeros_like(ref)
    out = _run(["eval", "--pred", str(_save(tmp_path / "p.nii.gz", empty)), "--ref", str(_save(tmp_path / "r.nii.gz", ref)),
                "--labels", "1,3", "--surface", "voxel", "--format", "json"], capsys)
    assert "NaN" not in out.out and "Infinity" not in out.out
    rows = json.loads(out.out)
    assert rows[0]["status"] == "pred_empty" and rows[0]["hd_mm"] is None and rows[0]["dice"] == 0.0
    assert rows[1]["status"] == "both_empty" and rows[1]["dice"] == 1.0 and rows[1]["hd95_mm"] == 0.0
    assert rows[1]["nsd"] == 1.0
    assert rows[0]["surface_definition"].startswith("boundary-voxel")


def test_geometry_mismatch_exits_2_and_points_to_resample_pred(tmp_path, capsys):
    ref, pred = _masks()
    ref_path = _save(tmp_path / "r.nii.gz", ref)
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.8  # one voxel along the first axis
    pred_path = _save(tmp_path / "p.nii.gz", ref, affine=shifted)
    with pytest.raises(SystemExit) as exc:
        run(["eval", "--pred", str(pred_path), "--ref", str(ref_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "affine" in err and "--resample-pred" in err and err.count("\n") == 1
    _save(tmp_path / "small.nii.gz", ref[:10])
    with pytest.raises(SystemExit):
        run(["eval", "--pred", str(tmp_path / "small.nii.gz"), "--ref", str(ref_path)])
    assert "shape" in capsys.readouterr().err


def test_resample_pred_moves_labels_onto_the_reference_grid(tmp_path, capsys):
    ref, _ = _masks()
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.8
    # The same world-space object stored one voxel earlier in a shifted grid.
    moved = np.roll(ref, -1, axis=0)
    out = _run(["eval", "--pred", str(_save(tmp_path / "p.nii.gz", moved, shifted)),
                "--ref", str(_save(tmp_path / "r.nii.gz", ref)), "--resample-pred", "--metrics", "dice"], capsys)
    assert [float(r["dice"]) for r in _tsv(out.out)] == [1.0, 1.0]


def test_batch_folders_give_case_rows_and_summary(tmp_path, capsys):
    ref, pred = _masks()
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    for case, p in (("a", pred), ("b", ref), ("c", np.zeros_like(ref))):
        _save(tmp_path / "pred" / f"{case}.nii.gz", p)
        _save(tmp_path / "ref" / f"{case}.nii.gz", ref)
    out = _run(["eval", "--pred-dir", str(tmp_path / "pred"), "--ref-dir", str(tmp_path / "ref"), "--labels", "1",
                "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out.out)))
    assert [r["case"] for r in rows] == ["a", "b", "c", "mean", "std_ddof1", "median"]
    mean = rows[3]
    assert mean["n_cases"] == "3" and mean["n_pred_empty"] == "1" and mean["n_ref_empty"] == "0"
    assert float(mean["hd95_mm"]) == pytest.approx(np.mean([float(rows[0]["hd95_mm"]), 0.0]))


def test_manifest_and_its_errors(tmp_path, capsys):
    ref, pred = _masks()
    _save(tmp_path / "p.nii.gz", pred)
    _save(tmp_path / "r.nii.gz", ref)
    manifest = tmp_path / "m.csv"
    manifest.write_text("case,pred,ref\nsubj01,p.nii.gz,r.nii.gz\n")
    out = _run(["eval", "--manifest", str(manifest), "--labels", "1", "--no-summary", "--lesions"], capsys)
    rows = _tsv(out.out)
    assert len(rows) == 1 and rows[0]["case"] == "subj01" and rows[0]["lesion_f1"] == "1.0"
    manifest.write_text("case,pred,ref\n")
    with pytest.raises(SystemExit) as exc:
        run(["eval", "--manifest", str(manifest)])
    assert exc.value.code == 2 and "no cases" in capsys.readouterr().err


def test_lesion_table_file(tmp_path, capsys):
    ref, pred = _masks()
    table = tmp_path / "lesions.json"
    _run(["eval", "--pred", str(_save(tmp_path / "p.nii.gz", pred)), "--ref", str(_save(tmp_path / "r.nii.gz", ref)),
          "--labels", "1", "--lesions", "--lesion-table", str(table)], capsys)
    lesions = json.loads(table.read_text())
    assert {(row["source"], row["detected"]) for row in lesions} == {("ref", True), ("pred", True)}


def test_unreadable_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    ref, _ = _masks()
    with pytest.raises(SystemExit) as exc:
        run(["eval", "--pred", str(bad), "--ref", str(_save(tmp_path / "r.nii.gz", ref))])
    assert exc.value.code == 2 and "bad.nii.gz" in capsys.readouterr().err


def _fresh_python(tmp_path, code: str, env=None) -> subprocess.CompletedProcess:
    """`code` in a new interpreter (nothing imported yet), with a prediction and a reference as argv 1, 2."""
    ref, pred = _masks()
    p, r = _save(tmp_path / "p.nii.gz", pred), _save(tmp_path / "r.nii.gz", ref)
    return subprocess.run([sys.executable, "-c", code, str(p), str(r)], capture_output=True, encoding="utf-8", env=env)


def test_eval_and_quantify_import_neither_torch_nor_pydantic(tmp_path):
    """Both run once per subject in shell loops. typer 0.29 coerces every option through a pydantic
    adapter: 0.1 s more per start, a quarter of a `segkit eval` process on a 256^3 pair (pyproject pins typer)."""
    code = (
        "import sys\nfrom segkit.cli.main import run\n"
        "for argv in ([ 'eval', '--pred', sys.argv[1], '--ref', sys.argv[2], '--lesions'], ['quantify', '-m', sys.argv[2]]):\n"
        "    try:\n        run(argv)\n    except SystemExit as exc:\n        assert not exc.code, exc.code\n"
        "heavy = [m for m in ('torch', 'pydantic') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = _fresh_python(tmp_path, code)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("preset, expected", [(None, 1), ("2", 2)])
def test_eval_runs_numpy_on_one_blas_thread_unless_the_user_says_otherwise(tmp_path, preset, expected):
    """OpenBLAS would start (and spin) a thread per core for a command that has no matrix products."""
    pytest.importorskip("threadpoolctl")
    code = (
        "import sys\nfrom segkit.cli.main import run\n"
        "try:\n    run(['eval', '--pred', sys.argv[1], '--ref', sys.argv[2]])\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "import json\nfrom threadpoolctl import threadpool_info\n"
        "print(json.dumps([p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    done = _fresh_python(tmp_path, code, env)
    assert done.returncode == 0, done.stderr
    threads = json.loads(done.stdout.strip().splitlines()[-1])
    assert threads and set(threads) == {expected}, done.stdout
