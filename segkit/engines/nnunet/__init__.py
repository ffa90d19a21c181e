"""nnU-Net v2, inference and training together. It serves SCIseg, lpm_nnsam2's rounds and any local
nnU-Net model (next: AISCT-SAM's trainer).

    model_folder.py  find and describe a trained model folder (no torch)
    labels.py        dataset.json labels, regions and channels (no torch)
    predictor.py     nnunetv2's predictor, built once per model, arrays in and out
    dataset.py       the nnU-Net v2 raw dataset reader and checks (no torch)
    train.py         fingerprint/plan/preprocess/train in an isolated worker; model zip export
    trainer.py       segkit's nnUNetTrainer (schedule, no-mirroring, patch bounds)
    _worker.py       the child process that runs nnU-Net's training
"""
