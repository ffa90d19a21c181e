"""cc_fodf's arrays in the model's frame: peaks in the registry's orientation (vectors turned with
the axes), fitted into the slice-size cube around the brain and put back; shared by the runner and
the training data, so both see exactly the same geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fit_to_cube(array: np.ndarray, size: int, box: tuple | None = None) -> tuple[np.ndarray, tuple]:
    """Crop/pad the three spatial axes of `array` to `size`, centred on its non-zero content.

    Returns the cube and the box ((source start, source stop, cube start) per axis) that
    `restore_from_cube` uses to put values back. Passing `box` reuses another array's placement.
    """
    spatial = array.shape[:3]
    if box is None:
        box = tuple(_axis_placement(n, size, centre) for n, centre in zip(spatial, _content_centre(array)))
    cube = np.zeros((size, size, size) + array.shape[3:], dtype=array.dtype)
    source = tuple(slice(start, stop) for start, stop, _ in box)
    target = tuple(slice(dst, dst + stop - start) for start, stop, dst in box)
    cube[target] = array[source]
    return cube, box


def restore_from_cube(cube: np.ndarray, box: tuple, shape: tuple[int, ...], fill=0) -> np.ndarray:
    out = np.full(tuple(shape[:3]) + cube.shape[3:], fill, dtype=cube.dtype)
    source = tuple(slice(start, stop) for start, stop, _ in box)
    target = tuple(slice(dst, dst + stop - start) for start, stop, dst in box)
    out[source] = cube[target]
    return out


def _content_centre(array: np.ndarray) -> list[float]:
    occupied = np.abs(array).reshape(array.shape[:3] + (-1,)).max(axis=-1) > 0
    if not occupied.any():
        return [n / 2 for n in array.shape[:3]]
    centre = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(occupied.any(axis=other))
        centre.append((idx[0] + idx[-1] + 1) / 2)
    return centre


def _axis_placement(length: int, size: int, centre: float) -> tuple[int, int, int]:
    if length <= size:
        return 0, length, (size - length) // 2
    start = int(round(centre - size / 2))
    start = min(max(start, 0), length - size)
    return start, start + size, 0


def canonical_peaks(image, bval=None, bvec=None, mask=None, *, cache: Path | None = None):
    """(RAS canonical peaks (X, Y, Z, 9) with vectors along the canonical axes, the checked input).

    `cache`: an .npz where peaks computed from a DWI are kept (training reuses them on --resume).
    """
    from segkit.tasks.cc_fodf.inputs import load_cc_input, peaks_for_input
    from segkit.tasks.cc_fodf.peak_frames import reorient_peaks
    from segkit.tasks.facts import orientation

    cc_input = load_cc_input(image, bval, bvec, mask)
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as saved:
            world, affine = saved["peaks"], saved["affine"]
    else:
        result = peaks_for_input(cc_input)
        world, affine = result.peaks, result.affine
        if cache is not None:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(cache).with_name(Path(cache).stem + ".tmp.npz")
            np.savez_compressed(tmp, peaks=world, affine=affine)
            tmp.replace(cache)
    canonical, _ = reorient_peaks(np.asarray(world, dtype=np.float32), affine, orientation("cc_fodf"), frame="world")
    return canonical, spatial_reference(cc_input.image)


def spatial_reference(image):
    """A 3D stand-in of a 4D input: the mask is written with its affine and header, 3D."""
    from segkit.io.image import Image

    return Image(
        data=np.asarray(image.data[..., 0]),
        affine=image.affine,
        path=image.path,
        header=image.header,
        original_shape=tuple(image.shape[:3]),
    )
