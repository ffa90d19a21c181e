"""QC overlays: PNGs on the planes through the mask's centre, written atomically."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image as PILImage

from segkit.qc.overlay import CONTOUR_RGB, mask_centre, write_qc_pngs


def _volume():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, size=(40, 50, 30))
    image[0, 0, 0] = 1e6  # an outlier the 1-99 percentile window must ignore
    mask = np.zeros(image.shape, np.uint8)
    mask[10:21, 20:31, 5:12] = 1
    return image, mask


def test_three_planes_through_the_centre_of_mass(tmp_path):
    image, mask = _volume()
    paths = write_qc_pngs(image, mask, tmp_path / "qc", "sub-01_seg")
    assert mask_centre(mask.astype(bool)) == (15, 25, 8)
    assert [p.name for p in paths] == ["sub-01_seg_qc_axis0_15.png", "sub-01_seg_qc_axis1_25.png", "sub-01_seg_qc_axis2_8.png"]
    assert sorted(p.name for p in (tmp_path / "qc").iterdir()) == sorted(p.name for p in paths)  # no temp files
    for path in paths:
        with PILImage.open(path) as png:
            assert png.format == "PNG" and png.mode == "RGB"
            pixels = np.asarray(png)
        assert max(pixels.shape[:2]) >= 256
        assert (pixels == CONTOUR_RGB).all(axis=-1).any()  # the contour is drawn
        grey = pixels[(pixels[..., 0] == pixels[..., 1]) & (pixels[..., 1] == pixels[..., 2])]
        assert grey.std() > 20  # the window spreads the noise: the outlier did not flatten it


def test_2d_image_gives_one_png(tmp_path):
    image, mask = _volume()
    paths = write_qc_pngs(image[:, :, 8], mask[:, :, 8], tmp_path, "slice")
    assert [p.name for p in paths] == ["slice_qc.png"]
    with PILImage.open(paths[0]) as png:
        assert max(png.size) >= 256 and png.size == (40 * 6, 50 * 6)  # enlarged, transposed


def test_empty_mask_still_draws_the_image_centre(tmp_path):
    image, _ = _volume()
    paths = write_qc_pngs(image, np.zeros(image.shape, np.uint8), tmp_path, "empty")
    assert [p.name for p in paths] == ["empty_qc_axis0_20.png", "empty_qc_axis1_25.png", "empty_qc_axis2_15.png"]


def test_shape_mismatch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="same"):
        write_qc_pngs(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), tmp_path, "x")
    assert not list(tmp_path.iterdir())


def test_pngs_are_readable_by_others_and_leave_no_temp_file(tmp_path):
    image, mask = _volume()
    previous = os.umask(0o022)
    try:
        written = write_qc_pngs(image, mask, tmp_path, "sub")
    finally:
        os.umask(previous)
    assert {p.stat().st_mode & 0o777 for p in written} == {0o644}  # QC pictures are for sharing
    assert sorted(tmp_path.iterdir()) == sorted(written)


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.uint16, np.float32, np.float64])
def test_window_equals_numpy_percentile_on_float64(dtype):
    """The window comes from the stored values (histogram or partition in the stored type), equal to
    np.percentile on a float64 copy to the last bit."""
    from segkit.qc.overlay import percentiles

    rng = np.random.default_rng(3)
    for size in (1, 2, 7, 100, 4099):
        values = (rng.standard_normal(size) * 300 + 400).clip(0, 60000).astype(dtype)
        assert percentiles(values, (1.0, 99.0)) == np.percentile(values.astype(np.float64), [1, 99]).tolist()


def test_qc_of_a_large_integer_image_makes_no_float64_copy(tmp_path, monkeypatch):
    """A 512x512x800 CT as float64 would be 1.7 GB, and its percentile another: the PNGs come from
    the int16 volume with less extra memory than the volume itself, and the centre of mass is
    np.argwhere's."""
    import tracemalloc

    from segkit.qc import overlay
    from segkit.qc.overlay import mask_centre

    rng = np.random.default_rng(4)
    image = rng.integers(-1024, 3000, (128, 96, 128)).astype(np.int16)
    mask = np.zeros(image.shape, np.uint8)
    mask[20:70, 10:40, 5:60] = 1
    mask[rng.random(image.shape) < 0.01] = 1
    assert mask_centre(mask) == tuple(int(round(c)) for c in np.argwhere(mask).mean(axis=0))
    monkeypatch.setattr(overlay, "_SLAB_VALUES", 1 << 14)  # its 32 MB slab is larger than this volume
    tracemalloc.start()
    write_qc_pngs(image, mask, tmp_path, "big")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < image.nbytes  # a float64 copy alone is 4x the int16 volume
