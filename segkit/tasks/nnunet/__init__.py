"""nnU-Net v2 models in segkit: model-folder discovery, label parsing and the task runner."""
