"""Read images and label maps into an `Image`: voxel array in the file's own axis order + RAS affine.

NIfTI goes through nibabel (scaling applied); NRRD, MetaImage and DICOM series folders go through
SimpleITK and are converted to nibabel's conventions (see `segkit.io.itk`). A label map whose
caller needs no header object (`load_label_map(header=False)`, `segkit eval`) is read without
nibabel when the file is a plain NIfTI-1 (segkit.io.nifti_header): nibabel is imported only where
it is used, since its import is a fifth of a small `segkit eval` process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segkit.errors import ImageError, one_line

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(eq=False)  # arrays do not compare with ==
class Image:
    """A voxel array with its geometry.

    `original_shape` is the shape stored in the file; `data` may have had trailing singleton axes
    squeezed away, and writers use `original_shape` to write the file's exact shape back.
    """

    data: np.ndarray  # or a segkit.io.slab.StoredVolume, read a slab at a time (load_image(on_disk=True))
    affine: np.ndarray
    path: Path
    header: object | None = None
    original_shape: tuple[int, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        self.path = Path(self.path)
        if self.original_shape is None:
            self.original_shape = tuple(self.data.shape)
        self.original_shape = tuple(int(n) for n in self.original_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def spatial_ndim(self) -> int:
        """Spatial axes of `data` (2 or 3); axes beyond the third are volumes/channels."""
        return min(self.data.ndim, 3)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.shape[: self.spatial_ndim]

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each spatial array axis (column norms of the affine)."""
        norms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return tuple(float(v) for v in norms[: self.spatial_ndim])

    @property
    def is_nifti(self) -> bool:
        if self.header is None:  # also a NIfTI read without nibabel: there is no header to keep
            return False
        import nibabel as nib

        return isinstance(self.header, nib.Nifti1Header)  # Nifti2Header subclasses it

    @property
    def voxel_volume_mm3(self) -> float:
        return voxel_volume_mm3(self.affine)


def voxel_volume_mm3(affine: np.ndarray) -> float:
    """|det| of the 3x3 part: the volume of one voxel, also for oblique affines."""
    return float(abs(np.linalg.det(np.asarray(affine)[:3, :3])))


def is_nifti_path(path: Path | str) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def load_image(
    path: Path | str,
    *,
    allowed_ndim: tuple[int, ...] = (2, 3),
    dtype=np.float32,
    allow_nonfinite: bool = False,
    series: str | None = None,
    keep_integers: bool = False,
    on_disk: bool = False,
) -> Image:
    """Read an image as floats (NIfTI scaling applied). Bad input raises a one-line ImageError.

    keep_integers: a NIfTI file storing integers without scaling keeps its stored type (a
    512x512x800 int16 CT is 400 MB, 800 MB as float32), for tasks that convert a slice at a time.
    on_disk (with keep_integers): such a 3D file is not read into memory at all; `data` is a
    segkit.io.slab.StoredVolume, read a slab at a time, for tasks that need only some slices."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"load_image reads floating point data; use load_label_map for labels, not {dtype}")
    path = _existing_path(path)
    image = _read_any(path, dtype, series, keep_integers, on_disk and keep_integers)
    image = _squeeze_to_allowed(image, allowed_ndim)
    if not allow_nonfinite:
        _check_finite(image)
    return image


def load_label_map(path: Path | str, *, allowed_ndim: tuple[int, ...] = (2, 3), header: bool = True) -> Image:
    """Read a label map: non-negative integers as uint8 when they fit, else int32.

    header=False: the caller never writes the image back, so a plain NIfTI-1 file may be read without
    nibabel, with the same checks and errors; its Image then has header None (writers would lose
    the file's own header fields)."""
    path = _existing_path(path)
    image = _read_plain_nifti(path) if not header and path.is_file() and is_nifti_path(path) else None
    if image is None:
        image = _read_any(path, None)
    image = _squeeze_to_allowed(image, allowed_ndim)
    image.data = _as_label_array(image.data, path)
    return image


def _existing_path(path: Path | str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ImageError(f"{path}: file not found")
    return path


def _read_any(path: Path, dtype: np.dtype | None, series: str | None = None, keep_integers: bool = False,
              on_disk: bool = False) -> Image:
    """Dispatch on the format. dtype None keeps the stored type (scaled when the file says so)."""
    if path.is_file() and is_nifti_path(path):
        return _read_nifti(path, dtype, keep_integers, on_disk)
    from segkit.io.itk import read_with_simpleitk

    data, affine = read_with_simpleitk(path, dtype, series)
    check_geometry(affine, min(data.ndim, 3), path)
    return Image(data=data, affine=affine, path=path, header=None)


def _unscaled_integers(img) -> bool:
    """The file stores integers that its header does not scale (slope 1 or unset, intercept 0 or unset)."""
    if not np.issubdtype(img.get_data_dtype(), np.integer):
        return False
    slope, inter = img.dataobj.slope, img.dataobj.inter
    return slope == 1.0 and inter == 0.0


def check_geometry(affine: np.ndarray, n_axes: int, path: Path | str) -> None:
    """Refuse voxel axes that map to no length or to the same direction (a singular affine):
    volumes would be 0 mL, distances 0 mm, and world prompts (--box-mm) could not be inverted."""
    columns = np.asarray(affine, dtype=np.float64)[:3, :n_axes]
    if not np.all(np.isfinite(affine)):
        raise ImageError(f"{path}: the image's affine (voxel-to-world matrix) has NaN or infinite entries")
    sizes = np.sqrt((columns ** 2).sum(axis=0))
    if np.any(sizes <= 0):
        raise ImageError(f"{path}: voxel size is zero along axis {int(np.argmin(sizes))} "
                         f"(voxel sizes {np.round(sizes, 6).tolist()} mm); fix the header's pixdim/sform")
    singular = np.linalg.svd(columns / sizes, compute_uv=False)
    if singular[-1] < 1e-6:
        raise ImageError(f"{path}: the image's affine is singular (two voxel axes point the same way); fix the header")


def _read_plain_nifti(path: Path) -> Image | None:
    """_read_nifti(path, None) without nibabel for a plain NIfTI-1 file, None for any other. The same
    checks in the same order: declared size, voxels (errors worded alike), affine, geometry."""
    from segkit.io.limits import check_declared_size
    from segkit.io.nifti_header import read_simple_header
    from segkit.io.nifti_voxels import read_unscaled

    facts = read_simple_header(path)
    if facts is None:
        return None
    try:
        check_declared_size(path, facts.shape, facts.dtype, facts.offset, None)
        if path.name.lower().endswith(".gz"):
            data = read_unscaled(path, facts)  # in chunks, as _voxels: no second copy of the volume
        else:  # mapped copy-on-write and seen as an ndarray, as np.asarray(ArrayProxy) gives it (mmap="c")
            data = np.asarray(np.memmap(path, dtype=facts.dtype, mode="c", shape=facts.shape, order="F",
                                        offset=facts.offset))
    except ImageError:
        raise
    except Exception as exc:  # gzip/zlib/OS errors of a truncated or corrupt file, as in _read_nifti
        raise ImageError(f"{path}: cannot read NIfTI image ({one_line(exc)})") from exc
    _check_affine(facts.affine, data, path)
    # no _check_pixdim: it returns at once for sform_code > 0, and read_simple_header takes 1..5 only
    return Image(data=data, affine=facts.affine, path=path, header=None)


def _check_affine(affine, data, path: Path) -> None:
    if affine is None or not np.all(np.isfinite(affine)):
        raise ImageError(f"{path}: the NIfTI header has no valid affine (sform/qform)")
    check_geometry(affine, min(np.ndim(data), 3), path)


def _read_nifti(path: Path, dtype: np.dtype | None, keep_integers: bool = False, on_disk: bool = False) -> Image:
    # nibabel reads lazily: a truncated .nii.gz only fails when the voxels are read, so read them here
    # (or, on_disk, check the whole file reads: segkit.io.slab).
    import nibabel as nib

    try:
        img = nib.load(str(path))
        if not isinstance(img, nib.Nifti1Image):  # Nifti2Image subclasses Nifti1Image
            raise ValueError(f"not a single-file NIfTI image ({type(img).__name__})")
        from segkit.io.limits import check_declared_size

        if keep_integers and _unscaled_integers(img):
            dtype = None
        check_declared_size(path, img.shape, img.get_data_dtype(), int(getattr(img.dataobj, "offset", 0)), dtype)
        data = _voxels(path, img, dtype, on_disk=on_disk and dtype is None)
        affine = img.affine
    except ImageError:
        raise
    except Exception as exc:  # nibabel/gzip/zlib raise many types for bad files
        raise ImageError(f"{path}: cannot read NIfTI image ({one_line(exc)})") from exc
    _check_affine(affine, data, path)
    _check_pixdim(img, path, min(np.ndim(data), 3))
    return Image(data=data, affine=affine, path=path, header=img.header.copy())


def _voxels(path: Path, img, dtype: np.dtype | None, on_disk: bool):
    """The voxels: the stored type for dtype None (floats otherwise); on_disk, a StoredVolume where
    the image qualifies (segkit.io.slab)."""
    if on_disk:
        from segkit.io.slab import opened_on_disk

        volume = opened_on_disk(path, img)
        if volume is not None:
            return volume
    from segkit.io.nifti_voxels import read_unscaled, reads_in_chunks

    if reads_in_chunks(path, img.dataobj):  # a .nii.gz without scaling: no second copy of the volume
        return read_unscaled(path, img.dataobj, dtype)
    if dtype is None:
        return np.asarray(img.dataobj)
    return img.get_fdata(dtype=dtype, caching="unchanged")


def _check_pixdim(img, path: Path, n_axes: int) -> None:
    """Without an sform the affine comes from pixdim, where nibabel silently turns a zero into 1 mm
    and a negative into its absolute value: read the stored values and refuse those instead."""
    if int(img.header["sform_code"]) > 0:
        return
    from nibabel.openers import Opener

    with Opener(str(path)) as handle:
        raw = type(img.header).from_fileobj(handle, check=False)
    sizes = [float(v) for v in raw["pixdim"][1 : n_axes + 1]]
    if not all(np.isfinite(v) and v > 0 for v in sizes):
        raise ImageError(f"{path}: the header's voxel sizes (pixdim) are {sizes} mm; each must be positive")


def _squeeze_to_allowed(image: Image, allowed_ndim: tuple[int, ...]) -> Image:
    """Drop trailing singleton axes (never below 2D) to reach the smallest allowed ndim.

    A 2D slice saved as (X, Y, 1) therefore loads as 2D when 2 is allowed, and stays 3D otherwise.
    """
    shape = image.shape
    if 0 in shape:
        raise ImageError(f"{image.path}: image is empty (shape {shape})")
    minimal = len(shape)
    while minimal > 2 and shape[minimal - 1] == 1:
        minimal -= 1
    reachable = [n for n in sorted(allowed_ndim) if minimal <= n <= len(shape)]
    if not reachable:
        wanted = " or ".join(f"{n}D" for n in sorted(allowed_ndim))
        raise ImageError(f"{image.path}: image is {len(shape)}D with shape {shape}; expected {wanted}")
    image.data = image.data.reshape(shape[: reachable[0]])
    return image


def _check_finite(image: Image) -> None:
    if np.issubdtype(image.data.dtype, np.integer):
        return  # always finite; and a StoredVolume is not read here
    bad = image.data.size - int(np.count_nonzero(np.isfinite(image.data)))
    if bad:
        raise ImageError(f"{image.path}: {bad} voxel(s) are NaN or infinite; fix or mask them before segmenting")


def _as_label_array(data: np.ndarray, path: Path) -> np.ndarray:
    """The label map as uint8 (or int32 when labels exceed 255). The array is this read's own, so a
    uint8 map is returned as it is: no min/max scan and no copy (0.1 s and 79 MB at 512x512x300)."""
    if data.dtype == np.uint8:
        return data
    if data.dtype == np.bool_:
        return data.view(np.uint8)
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)):
            raise ImageError(f"{path}: label map has NaN or infinite values")
        if not np.array_equal(data, np.round(data)):
            raise ImageError(f"{path}: label map has non-integer values; expected integer labels")
    if data.size and data.min() < 0:
        raise ImageError(f"{path}: label map has negative values (min {data.min()}); labels must be >= 0")
    top = data.max() if data.size else 0
    if top <= np.iinfo(np.uint8).max:
        return data.astype(np.uint8)
    if top <= np.iinfo(np.int32).max:
        return data.astype(np.int32)
    raise ImageError(f"{path}: label value {top} does not fit in int32")

