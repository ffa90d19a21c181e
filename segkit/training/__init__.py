"""Training drivers. `segkit.engines.nnunet.train` trains nnU-Net v2 models through nnunetv2's own API."""
