"""A compressed NIfTI's voxels read into one array a chunk at a time.

nibabel reads a .nii.gz with one `readinto` of the whole volume, and Python 3.11's gzip serves that
by decompressing everything into a bytes object first and copying it across: twice the volume at
the peak (840 MB for a 512x512x800 int16 CT). Reading in chunks gives the same array from the
volume plus one chunk. Each read asks gzip for 64 KB: every read makes a bytes object of that size
first, and at 64 KB the allocator reuses one block that stays in cache, where 16 MB pieces cost a fresh
mapping (4 k page faults) and a copy from main memory each (a 256^3 pair: 0.048 -> 0.023 s, 13.5 k ->
1.1 k page faults). Only unscaled voxels are read here (the values are then the stored ones, or
nibabel's two casts to a float type); scaled files and uncompressed files (which nibabel maps
into memory) keep nibabel's own path. The file is opened with the standard library, not nibabel's
opener, so that label maps read without nibabel (segkit.io.nifti_header) never import it; for
reading, nibabel's opener is the same gzip.GzipFile (unless the optional indexed_gzip is installed,
which segkit does not use).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

_CHUNK_BYTES = 16 << 20  # voxels converted at a time (a cast to another type)
_READ_BYTES = 64 << 10  # bytes asked of gzip per read: below glibc's 128 KB mmap threshold


def reads_in_chunks(path: Path, proxy) -> bool:
    """True for a gzip-compressed file whose header does not scale its voxels."""
    return str(path).lower().endswith(".gz") and float(proxy.slope) == 1.0 and float(proxy.inter) == 0.0


def read_unscaled(path: Path, proxy, dtype=None) -> np.ndarray:
    """The voxels nibabel's `np.asarray(proxy)` (dtype None) or `get_fdata(dtype)` would return.

    `proxy` is the image's ArrayProxy, or anything with its shape, stored dtype (with its byte order),
    memory order and offset: a segkit.io.nifti_header.NiftiHeader."""
    stored = np.dtype(proxy.dtype)
    wanted = stored if dtype is None else np.dtype(dtype)
    out = np.empty(proxy.shape, dtype=wanted, order=proxy.order)
    flat = out.reshape(-1, order=proxy.order)  # a view, in the file's order
    with _open(Path(path)) as handle:
        handle.seek(proxy.offset)
        if wanted == stored:
            _fill(handle, memoryview(flat).cast("B"))
            return out
        # nibabel casts unscaled voxels to the promoted type first, then to the one asked for
        promoted = np.promote_types(stored, wanted)
        raw = np.empty(max(1, _CHUNK_BYTES // stored.itemsize), dtype=stored)
        for start in range(0, flat.size, raw.size):
            part = raw[:min(raw.size, flat.size - start)]
            _fill(handle, memoryview(part).cast("B"))
            flat[start:start + part.size] = part.astype(promoted).astype(wanted)
    return out


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _fill(handle, view: memoryview) -> None:
    filled = 0
    while filled < len(view):
        count = handle.readinto(view[filled:filled + _READ_BYTES])
        if not count:
            raise ValueError(f"the file ends after {filled} of {len(view)} bytes of voxels")
        filled += count
