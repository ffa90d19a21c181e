"""Training drivers. `segkit.training.nnunet` trains nnU-Net v2 models through nnunetv2's own API."""
