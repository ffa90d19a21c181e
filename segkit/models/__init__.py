"""Network families shared by tasks.

    sam.py       the SAM family by name (LiteMedSAM, SAM ViT-B, SAM 2.1 tiny/small), built from
                 store-verified checkpoints loaded with torch.load(weights_only=True)
    encoders.py  image-encoder backends for SAM-style models (torch eager, ONNX Runtime, cached)
    prompt.py    one prompt predictor (boxes, points with labels, low-res masks; embedding cache)
    blocks.py    2D/3D network blocks tasks share (residual block, squeeze-excitation, conv-norm-act)
                 and the key renaming that loads weights saved before a block moved there
"""
