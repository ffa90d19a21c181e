"""The training kit of segkit's own (non-nnU-Net) trainers: checkpoints.py (last/best, --resume),
loop.py (the epoch loop), package.py (model packages), losses.py, progress.py. nnU-Net v2 models
train through `segkit.engines.nnunet.train`."""
