"""medsam reads a box's slab of a stored-integer NIfTI, not the whole volume (issue 17, item 4).

The volume stays on disk (segkit.io.slab.StoredVolume); the values of a slab equal those of a
whole read; the memory a slab read needs is measured (tracemalloc) beside the whole read's; a file
cut short anywhere is still refused before any compute; and the masks are those of the in-memory
path, voxel for voxel.
"""

from __future__ import annotations

import gzip
import pickle
import tracemalloc

import nibabel as nib
import numpy as np
import pytest

from segkit.errors import ImageError
from segkit.io.image import load_image
from segkit.io.slab import StoredVolume
from test_medsam_cli import segkit

SHAPE = (128, 128, 160)  # int16: 5 MiB


@pytest.fixture(scope="module")
def stored_ct(tmp_path_factory):
    rng = np.random.default_rng(7)
    volume = rng.integers(-1000, 1500, size=SHAPE).astype(np.int16)
    path = tmp_path_factory.mktemp("slab") / "ct.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 1.5, 1.0])), path)
    return path, volume


def _peak_bytes(read) -> int:
    tracemalloc.start()
    try:
        read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_stored_integer_volume_stays_on_disk_and_slabs_read_its_values(stored_ct):
    path, volume = stored_ct
    image = load_image(path, keep_integers=True, on_disk=True)
    assert isinstance(image.data, StoredVolume)
    assert image.shape == SHAPE and image.data.dtype == np.int16
    assert np.array_equal(image.data[:, :, 70:90], volume[:, :, 70:90])
    assert np.array_equal(image.data[5], volume[5])  # other axes too (nibabel reads what it needs)
    assert np.array_equal(np.asarray(image.data, dtype=np.float64), volume.astype(np.float64))
    shipped = pickle.loads(pickle.dumps(image.data))  # a cohort ships prepared arrays to other workers
    assert np.array_equal(shipped[:, :, 3], volume[:, :, 3])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_medsam_planes_from_a_held_slab_equal_the_volume_along_every_axis(stored_ct, axis):
    from segkit.tasks.medsam.propagate import SliceSegmenter

    path, volume = stored_ct
    segmenter = SliceSegmenter(None, load_image(path, keep_integers=True, on_disk=True).data, axis)
    segmenter.hold_slab(30, 34)
    for index in range(30, 35):
        plane = segmenter.plane(index)
        assert plane.dtype == np.int16 and np.array_equal(plane, np.take(volume, index, axis=axis))


def test_a_slab_read_needs_a_fraction_of_a_whole_read(stored_ct):
    path, volume = stored_ct
    whole = _peak_bytes(lambda: load_image(path, keep_integers=True))
    slab = _peak_bytes(lambda: load_image(path, keep_integers=True, on_disk=True).data[:, :, 70:90])
    assert whole >= volume.nbytes  # the measure sees a whole volume when one is read
    assert slab <= volume.nbytes / 4, (slab, volume.nbytes)  # 20 of 160 slices, plus the check's buffers


def test_floats_and_scaled_integers_are_read_as_before(tmp_path):
    floats = tmp_path / "f.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.float32), np.eye(4)), floats)
    assert isinstance(load_image(floats, keep_integers=True, on_disk=True).data, np.ndarray)
    scaled = nib.Nifti1Image(np.ones((8, 8, 4), np.int16), np.eye(4))
    scaled.header.set_slope_inter(2.0, 0.0)
    nib.save(scaled, tmp_path / "s.nii.gz")
    image = load_image(tmp_path / "s.nii.gz", keep_integers=True, on_disk=True)
    assert isinstance(image.data, np.ndarray) and float(image.data.max()) == 2.0


def test_a_file_cut_short_beyond_the_box_is_refused_when_opened(stored_ct, tmp_path):
    path, _ = stored_ct
    raw = gzip.decompress(path.read_bytes())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw)[:-4096])  # the damage is in the last slices only
    with pytest.raises(ImageError, match="cut.nii.gz"):
        load_image(cut, keep_integers=True, on_disk=True)
    out = tmp_path / "out"
    result = segkit("segment", "-task", "medsam", "-i", str(cut), "--box", "40,40,10,80,80,12", "-o", str(out),
                    home=tmp_path / "home")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_medsam_masks_from_the_slab_equal_those_from_memory(tmp_path):
    """The real LiteMedSAM weights on an int16 CT-like volume: stored as int16 (read a slab at a
    time) and as float32 (read whole), the masks are identical."""
    grid = np.mgrid[0:64, 0:64, 0:24]
    body = (grid[0] - 32) ** 2 + (grid[1] - 32) ** 2 <= 26 ** 2
    organ = ((grid[0] - 30) / 10) ** 2 + ((grid[1] - 34) / 8) ** 2 + ((grid[2] - 12) / 9) ** 2 <= 1
    volume = (np.where(body, 40, -1000) + np.where(organ, 90, 0)).astype(np.int16)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "int16.nii.gz")
    nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), tmp_path / "float32.nii.gz")
    masks = []
    for name in ("int16", "float32"):
        result = segkit("segment", "-task", "medsam", "-i", str(tmp_path / f"{name}.nii.gz"), "--box", "18,24,9,42,46,14",
                        "--window", "-160,240", "--device", "cpu", "-o", str(tmp_path / name / "mask.nii.gz"),
                        home=tmp_path / "home")
        assert result.returncode == 0, result.stderr
        masks.append(np.asarray(nib.load(tmp_path / name / "mask.nii.gz").dataobj))
    assert masks[0].sum() > 100  # the organ was found, not an empty mask on both sides
    assert np.array_equal(masks[0], masks[1])
