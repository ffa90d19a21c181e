"""Issue 11 item 10: a DICOM folder with several series is read only with --series naming one."""

from __future__ import annotations

import numpy as np
import pytest

from bad_inputs import dicom_two_series
from segkit.errors import ImageError
from segkit.io.image import load_image


def test_series_lists_and_chooses(tmp_path):
    dicom_two_series(tmp_path)
    with pytest.raises(ImageError, match=r'1\.2\.3\.4 \("T2 axial", 4 slices\); 1\.2\.3\.5 \("T1 axial", 3 slices\)'):
        load_image(tmp_path / "dcm")
    t1 = load_image(tmp_path / "dcm", series="1.2.3.5")
    assert t1.shape == (16, 16, 3) and sorted(np.unique(t1.data).tolist()) == [200.0, 201.0, 202.0]
    assert load_image(tmp_path / "dcm", series="1.2.3.4").shape == (16, 16, 4)
