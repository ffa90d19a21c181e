"""Issue 11 item 1: no command overwrites a file it reads, whatever the option that names it.

Each case runs the real `segkit` command and checks exit 2, one line on stderr, the input's bytes
unchanged and nothing new written. The checks come before any model loads, so no weights are needed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

SEGKIT = str(Path(sys.executable).with_name("segkit"))


@pytest.fixture
def case(tmp_path, segkit_home) -> Path:
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.random((16, 16, 4)).astype(np.float32), np.eye(4)), str(tmp_path / "img.nii.gz"))
    mask = np.zeros((16, 16, 4), np.uint8)
    mask[4:9, 4:9, 1:3] = 1
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(tmp_path / "m.nii.gz"))
    (tmp_path / "qc").mkdir()
    # a 2D image and a readable prompt mask named like one of its QC images (inputs are read first)
    sitk.WriteImage(sitk.GetImageFromArray((rng.random((16, 16)) * 255).astype(np.uint8)), str(tmp_path / "img2d.png"))
    sitk.WriteImage(sitk.GetImageFromArray(mask[:, :, 1]), str(tmp_path / "qc" / "img2d_seg_qc_axis0_5.png"))
    (tmp_path / "link.nii.gz").symlink_to(tmp_path / "m.nii.gz")
    (tmp_path / "pairs.csv").write_text("pred,ref\nimg.nii.gz,m.nii.gz\n")
    return tmp_path


CASES = {
    "prompt mask as -o": ["segment", "-task", "medsam", "-i", "img.nii.gz", "--prompt-mask", "m.nii.gz", "-o", "m.nii.gz"],
    "-o a symlink to an input": ["segment", "-task", "medsam", "-i", "img.nii.gz", "--prompt-mask", "m.nii.gz", "-o", "link.nii.gz"],
    "-o the input image": ["segment", "-task", "medsam", "-i", "img.nii.gz", "--box", "2,2,0,9,9,3", "-o", "img.nii.gz"],
    "QC folder holds a read file": ["segment", "-task", "medsam", "-i", "img2d.png", "--prompt-mask",
                                    "qc/img2d_seg_qc_axis0_5.png", "--qc", "qc", "-o", "out/"],
    "lesion table as --ref": ["eval", "--pred", "img.nii.gz", "--ref", "m.nii.gz", "--lesions", "--lesion-table", "m.nii.gz"],
    "lesion table through a symlink": ["eval", "--pred", "img.nii.gz", "--ref", "m.nii.gz", "--lesions", "--lesion-table", "link.nii.gz"],
    "lesion table as the manifest": ["eval", "--manifest", "pairs.csv", "--lesions", "--lesion-table", "pairs.csv"],
}


@pytest.mark.parametrize("args", list(CASES.values()), ids=list(CASES))
def test_an_input_is_never_an_output(case, args):
    before = {p: p.read_bytes() for p in case.rglob("*") if p.is_file() and not p.is_symlink()}
    result = subprocess.run([SEGKIT, *args], cwd=case, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ("overwrite" in lines[0]), result.stderr
    after = {p: p.read_bytes() for p in case.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == before  # nothing changed, nothing new


def test_a_model_folder_protects_every_file_in_it(tmp_path):
    from segkit import api
    from segkit.errors import SegkitError

    (tmp_path / "model" / "fold_0").mkdir(parents=True)
    (tmp_path / "model" / "fold_0" / "w.nii.gz").write_bytes(b"x")
    with pytest.raises(SegkitError, match="overwrite an input"):
        api.check_outputs_spare_inputs([tmp_path / "model" / "fold_0" / "w.nii.gz"], [tmp_path / "model"])


def test_a_hard_link_to_an_input_is_the_input(tmp_path):
    import os

    from segkit import api
    from segkit.errors import SegkitError

    (tmp_path / "a.nii.gz").write_bytes(b"x")
    os.link(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")
    with pytest.raises(SegkitError, match="overwrite an input"):
        api.check_outputs_spare_inputs([tmp_path / "b.nii.gz"], [tmp_path / "a.nii.gz"])
