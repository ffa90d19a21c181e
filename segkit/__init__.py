"""segkit: task-based medical image segmentation with verified models and geometry-safe I/O."""

__version__ = "0.1.0"
