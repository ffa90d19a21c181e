"""Task engines: one sub-package per task (its model, pre- and post-processing and runner)."""
