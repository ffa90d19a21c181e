"""`--max-memory SIZE`: a hard cap on the memory a segkit process may allocate.

The cap is the kernel's data-segment limit (RLIMIT_DATA: the heap and private writable mappings,
where numpy, torch and ONNX Runtime put arrays), set before any image is read. An allocation past it
fails at once instead of pushing a shared machine into swap or the OOM killer; segkit then stops
with one line (exit 2) and, since every output is written atomically, leaves no partial file. The
limit counts allocated address space, which runs a little above resident memory (about 10-25% for
segkit's commands), so give the cap some room over the peak RSS that benchmarks/README.md lists.
Sizes are binary: 2G = 2 GiB.
"""

from __future__ import annotations

import re

from segkit.errors import SegkitError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# what torch and ONNX Runtime say when an allocation fails (they raise their own errors, not MemoryError),
# and numpy's MemoryError text, which a reader's error may quote
_ALLOCATION_FAILURES = ("can't allocate memory", "bad_alloc", "failed to allocate memory", "out of memory",
                        "unable to allocate")


class MemoryCapError(SegkitError):
    """The command needs more memory than --max-memory allows (or the cap cannot be applied)."""


def parse_size(text: str) -> int:
    """'2G', '1500M', '2GiB', '512MB' or a byte count -> bytes (binary units)."""
    match = _SIZE.match(str(text))
    if not match:
        raise MemoryCapError(f"--max-memory {text!r}: give a size such as 2G, 1500M or 4GiB")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise MemoryCapError(f"--max-memory {text!r}: must be more than 0")
    return size


MAX_MEMORY_HELP = ("Cap this process's memory, e.g. 2G (binary units): past it segkit stops with one line (exit 2) "
                   "and writes nothing.")
CAPPED = {"text": None}  # the cap this process runs under, for the out-of-memory message


def apply_memory_cap(text: str | None) -> int | None:
    """Cap this process's data memory at `text` (None: no cap); refuses a cap below what the process
    already holds. Commands call it after checking their options and before reading any image."""
    if not text:
        return None
    try:
        import resource
    except ImportError:  # Windows
        raise MemoryCapError("--max-memory needs Linux (the kernel's RLIMIT_DATA)") from None
    limit = parse_size(text)
    in_use = data_segment_bytes()
    if in_use is not None and limit <= in_use:
        raise MemoryCapError(f"--max-memory {text}: below the {in_use / (1 << 20):.0f} MiB segkit already holds "
                             "before reading any image")
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY and limit > hard:
        raise MemoryCapError(f"--max-memory {text}: above this session's hard limit ({hard / (1 << 20):.0f} MiB)")
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    CAPPED["text"] = text
    return limit


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse instead of returning it to the kernel; False where the
    C library has no mallopt (macOS, Windows), which changes nothing else.

    By default blocks from 128 KiB up to a moving threshold are mapped and unmapped one by one, and
    the heap is trimmed as soon as 2x that threshold lies free. Array code that makes temporaries of
    a few MiB over and over then pays a page fault and a page of zeroing per 4 KiB each time: on a
    512x512x300 `segkit eval` whose prediction fills the image that was 0.15-0.45 s of kernel time
    (52 k page faults, 37 k with this). Blocks up to 32 MiB (glibc's ceiling) now come from the heap,
    and up to 1 GiB of free heap is kept. Not under --max-memory: memory kept free still counts
    against the cap (RLIMIT_DATA), and larger arrays could then fail sooner. A user's own
    MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ wins.
    """
    import ctypes
    import os

    if {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & set(os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD in <malloc.h>
    return bool(mallopt(mmap_threshold, 32 << 20)) and bool(mallopt(trim_threshold, 1 << 30))


def explained(message: str) -> str:
    """A reader's own error about a failed allocation, with the cap that caused it."""
    if CAPPED["text"] is not None and ("MemoryError" in message or _names_allocation_failure(message)):
        return f"{message}: needs more memory than --max-memory {CAPPED['text']} allows; nothing was written"
    return message


def out_of_memory_message(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:160] or type(exc).__name__
    if CAPPED["text"] is None:
        return f"out of memory ({detail})"
    return f"needs more memory than --max-memory {CAPPED['text']} allows ({detail}); nothing was written"


def data_segment_bytes() -> int | None:
    """VmData of this process (what RLIMIT_DATA counts), or None where /proc is absent."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def is_allocation_failure(exc: BaseException) -> bool:
    """A failed allocation, whichever library raised it."""
    return isinstance(exc, MemoryError) or _names_allocation_failure(str(exc))


def _names_allocation_failure(text: str) -> bool:
    return any(marker in text.lower() for marker in _ALLOCATION_FAILURES)
