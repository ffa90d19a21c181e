"""nnSAM2 (task lpm_nnsam2): few-shot lumbar paraspinal muscles from one annotated slice.

Pipeline: support + target volumes -> 256x256 axial frames (slices.py) -> one interleaved
sequence per target (sequence.py) -> propagation with SAM2's video predictor (sam2_propagator.py)
or LiteMedSAM box propagation (litemedsam_propagator.py), each recording a per-frame, per-object
quality score -> 3D masks in each target's grid (rebuild.py) -> per-slice score tables and
pseudo-label selection (selection.py) -> nnU-Net rounds (rounds.py). task.py is the runner that
`segkit segment -task lpm_nnsam2` uses.
"""
