"""medsam on CT: the intensity window LiteMedSAM sees (--window, --modality, the DICOM header)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from segkit.io.dicom import dicom_modality
from segkit.tasks.medsam.window import PRESETS, Window, chosen_window, parse_window
from segkit.tasks.options import OptionError
from test_io_image import write_dicom_series
from test_medsam_cli import segkit


@pytest.mark.parametrize("text, expected", [
    ("soft-tissue", Window("soft-tissue", -160.0, 240.0)),
    ("Brain", Window("brain", 0.0, 80.0)),
    (" -1000, 400 ", Window("custom", -1000.0, 400.0)),
    ("none", None),
    (None, None),
])
def test_windows_parse(text, expected):
    assert parse_window(text) == expected


@pytest.mark.parametrize("text", ["soft", "100", "1,2,3", "300,100", "nan,4", "a,b"])
def test_bad_windows_are_refused(text):
    with pytest.raises(OptionError, match="--window"):
        parse_window(text)


def test_presets_are_ordered_ranges():
    assert all(low < high for low, high in PRESETS.values())


@pytest.mark.parametrize("window, modality, header, expected", [
    ("bone", "auto", "MR", "bone"),  # an explicit window wins
    (None, "ct", None, "soft-tissue"),  # --modality ct on a NIfTI
    (None, "auto", "CT", "soft-tissue"),  # the DICOM header
    (None, "auto", "MR", None),
    (None, "auto", None, None),  # a NIfTI says nothing: no window
    (None, "mri", "CT", None),  # --modality overrides the header
    ("none", "ct", "CT", None),  # and --window none turns it off
])
def test_the_window_is_chosen_from_option_modality_and_header(window, modality, header, expected):
    chosen = chosen_window(window, modality, header)
    assert (chosen.name if chosen else None) == expected


def _ct_volume() -> np.ndarray:
    """(k, j, i) int16 HU: air, a soft-tissue disc, a brighter blob inside it, and a metal rod."""
    grid = np.mgrid[0:6, 0:48, 0:48]
    body = (grid[1] - 24) ** 2 + (grid[2] - 24) ** 2 <= 20 ** 2
    blob = (grid[1] - 22) ** 2 / 64 + (grid[2] - 26) ** 2 / 36 <= 1
    volume = np.where(body, 40, -1000) + np.where(blob, 60, 0)
    volume[:, 34:37, 10:13] = 3000
    return volume.astype(np.int16)


@pytest.fixture
def ct_series(tmp_path) -> Path:
    image = sitk.GetImageFromArray(_ct_volume())
    image.SetSpacing((0.8, 0.8, 2.5))
    folder = tmp_path / "ct_series"
    write_dicom_series(image, folder)
    return folder


def test_dicom_modality_reads_the_header(ct_series, tmp_path):
    assert dicom_modality(ct_series) == "CT"
    nifti = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(nifti))
    assert dicom_modality(nifti) is None
    assert dicom_modality(tmp_path / "missing") is None


def test_a_bad_window_is_exit_2_before_anything_is_read(tmp_path, segkit_home):
    out = tmp_path / "out"
    result = segkit("segment", "-task", "medsam", "-i", str(tmp_path / "missing.nii.gz"), "--box", "1,1,0,5,5,1",
                    "--window", "400,100", "-o", str(out), home=segkit_home)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--window" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_a_dicom_ct_gets_the_soft_tissue_window_and_the_sidecar_says_so(ct_series, tmp_path, segkit_home):
    box = ("--box", "14,16,1,30,36,2", "--device", "cpu", "--backend", "torch")  # two slices: the window, not the propagation, is tested
    default = segkit("segment", "-task", "medsam", "-i", str(ct_series), *box, "-o", str(tmp_path / "a"),
                     home=segkit_home)
    assert default.returncode == 0, default.stderr
    (sidecar,) = (tmp_path / "a").glob("*.json")
    assert json.loads(sidecar.read_text(encoding="utf-8"))["intensity_window"] == {
        "name": "soft-tissue", "low": -160.0, "high": 240.0}
    raw = segkit("segment", "-task", "medsam", "-i", str(ct_series), *box, "--window", "none",
                 "-o", str(tmp_path / "b"), home=segkit_home)
    assert raw.returncode == 0, raw.stderr
    (sidecar,) = (tmp_path / "b").glob("*.json")
    assert "intensity_window" not in json.loads(sidecar.read_text(encoding="utf-8"))
