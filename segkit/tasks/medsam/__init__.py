"""LiteMedSAM (box prompts): MedSAM's official LiteMedSAM inference procedure, 2D and 3D.

Modules: `prompts` (boxes from text, world mm or a mask), `preprocess` (resize, normalise, pad,
box scaling), `model` (network loading and the image-encoder backends), `propagate` (the 3D walk
outward from the middle slice), `runner` (`segment_medsam`: arrays in, mask out) and `task`
(`MedsamTask`, the segkit.tasks.base runner that reads the image and prompts for the CLI).
"""
