"""A 3D NIfTI volume that stays on disk and is read a slab at a time.

A task that needs only some slices (medsam segments the slices of its boxes) should not hold a
whole CT: a 512x512x800 int16 volume is 400 MiB, as much as the rest of a medsam run's model and
buffers together. Only files that store integers the header does not scale qualify, so a slab read
gives exactly the values a whole read would, and they cannot be NaN or infinite. The whole file is
still checked when the volume is opened (a .nii.gz is decompressed once, in chunks, to its CRC), so
a truncated file is refused before any compute, as an eager read would refuse it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit.errors import ImageError, one_line

_CHUNK = 1 << 20  # bytes decompressed at a time by the integrity check


class StoredVolume:
    """Read-only, array-like view of a NIfTI file's voxels: shape, dtype, ndim and indexing like an
    ndarray (each index reads only the bytes it needs); np.asarray() reads the whole volume."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._open()

    def _open(self) -> None:
        import nibabel as nib

        self._proxy = nib.load(str(self.path)).dataobj
        self.shape = tuple(int(n) for n in self._proxy.shape)
        self.dtype = np.dtype(self._proxy.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index) -> np.ndarray:
        try:
            return np.asarray(self._proxy[index])
        except Exception as exc:  # the file changed or broke after it was checked
            raise ImageError(f"{self.path}: cannot read the image's voxels ({one_line(exc)})") from exc

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def reshape(self, shape):
        return self if tuple(shape) == self.shape else np.asarray(self).reshape(shape)

    def __getstate__(self) -> dict:  # nibabel's proxy holds a lock: ship the path, reopen on arrival
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]
        self._open()


def opened_on_disk(path: Path, img) -> StoredVolume | None:
    """A StoredVolume for a 3D NIfTI image `img` (nibabel's, of `path`; the caller has checked that it
    stores unscaled integers), once the whole file is known to read; None for other shapes (a
    trailing singleton axis is squeezed by the reader)."""
    if len(img.shape) != 3 or img.shape[2] == 1:
        return None
    check_whole_file_reads(path)
    return StoredVolume(path)


def check_whole_file_reads(path: Path) -> None:
    """Decompress a .nii.gz to its end in chunks (gzip checks length and CRC there): a file cut short
    or corrupted anywhere fails here, not when a slice beyond the damage would have been read."""
    if not path.name.lower().endswith(".gz"):
        return  # an uncompressed file's length is checked against its header (segkit.io.limits)
    import gzip

    with gzip.open(path, "rb") as handle:
        while handle.read(_CHUNK):
            pass
