"""segkit: task-based medical image segmentation with verified models and geometry-safe I/O."""

import os

__version__ = "0.1.0"

# PyTorch's CPU allocator backs large tensors with transparent huge pages when THP_MEM_ALLOC_ENABLE
# is set (read once, at torch's first large allocation; a user's own setting wins). Without it,
# every large tensor is fresh mmap'd memory zero-filled one 4 KiB page fault at a time: on ais_ncct's
# 3D network that was over half the CPU time of a window (kernel 19 s of 52 s on a 4x256x256 one,
# 7 s of 38 s with it; same peak RSS). Nothing else reads it; where the kernel has no THP it is a no-op.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
