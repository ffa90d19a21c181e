"""Headers that lie about size are caught before any voxel is read.

A 1 kB file can declare 20000^3 voxels; reading it ends in a bare MemoryError (or a long wait).
The declared data size is compared with what the file can hold (uncompressed NIfTI: its length;
gzip: the uncompressed length its trailer records) and with the memory available.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from segkit.errors import ImageError

GZIP_SIZE_WRAP = 1 << 32  # the gzip trailer stores the uncompressed length modulo 2^32


def check_declared_size(path: Path, shape, stored_dtype, offset: int, read_dtype=None) -> None:
    """Refuse a header whose voxels the file cannot hold, or that would not fit in memory."""
    n_voxels = int(np.prod([int(n) for n in shape], dtype=object))
    stored = n_voxels * np.dtype(stored_dtype).itemsize
    held, wraps = _bytes_held(Path(path))
    if stored + offset > held and not (wraps and stored + offset >= GZIP_SIZE_WRAP):
        raise ImageError(f"{path}: the header declares {tuple(shape)} voxels ({_size(stored)}) "
                         f"but the file holds {_size(max(held - offset, 0))} of data; the file is truncated or corrupt")
    check_fits_in_memory(path, shape, n_voxels * np.dtype(read_dtype or stored_dtype).itemsize)


def check_fits_in_memory(path, shape, needed: int) -> None:
    available = available_memory()
    if available is not None and needed > available:
        raise ImageError(f"{path}: the header declares {tuple(shape)} voxels, {_size(needed)} in memory, "
                         f"more than the {_size(available)} available")


def _bytes_held(path: Path) -> tuple[int, bool]:
    """(uncompressed bytes the file holds, whether that count wraps): its size, or a .gz file's
    trailer, which counts modulo 2^32, so only a declared size under 4 GiB can be compared."""
    size = path.stat().st_size
    if not path.name.lower().endswith(".gz"):
        return size, False
    if size < 18:
        return 0, False
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        return int.from_bytes(handle.read(4), "little"), True


def available_memory() -> int | None:
    """Physical memory free for this process (Linux: MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
