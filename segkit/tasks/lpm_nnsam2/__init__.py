"""nnSAM2 (task lpm_nnsam2): few-shot lumbar paraspinal muscles from one annotated slice.

Pipeline: support + target volumes -> 256x256 axial frames (slices.py) -> the support registered
to each target (align.py) -> propagation from the best-aligned slice with SAM2's video predictor
(sam2_propagator.py) or LiteMedSAM box propagation (litemedsam_propagator.py), each recording a
per-frame, per-object IoU -> per-slice failure checks (signal.py) -> 3D masks in each target's grid
(rebuild.py) -> per-slice tables and pseudo-label selection (selection.py) -> nnU-Net rounds
(rounds.py). task.py is the runner that
`segkit segment -task lpm_nnsam2` uses.
"""
