"""medsam (LiteMedSAM) on the MNI152 template through segkit's Python API, model loaded once.

Three `segkit.api.segment` calls in one process: the left lateral ventricle, the right one, and
both at once (two boxes in one call). The first call loads LiteMedSAM (and, on a fresh cache,
exports its ONNX encoder); the later calls reuse the loaded model, so they cost only inference.
The printed timings show it. Each call writes a mask, its JSON sidecar and (with --qc) PNGs.
The masks are LiteMedSAM's own: a general model, so check the QC images before using them.

    python examples/01_medsam_api.py [-o OUT_DIR] [--slices N] [--device cpu] [--backend auto]

Needs nilearn (`pip install 'segkit[examples]'`), which ships the MNI152 template. Offline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from segkit import api

# Boxes in voxel indices of the template's own array order (i0, j0, k0, i1, j1, k1), corners
# included. MNI152 (1 mm, 197x233x189) is stored RAS with x = i - 98 mm, so the subject's left
# hemisphere (x < 0) has i < 98.
# In-plane boxes hug each ventricle (2 voxels of margin) on axial slices around k = 95, where
# its section is one crescent: a box much larger than the object invites LiteMedSAM to segment
# something else.
CENTRE_SLICE = 95
VENTRICLES = {"left": (73, 89, 98, 146), "right": (98, 89, 124, 146)}  # (i0, j0, i1, j1)


def box(name: str, slices: int) -> str:
    """A 3D box over `slices` axial slices around CENTRE_SLICE: medsam propagates it slice by slice."""
    i0, j0, i1, j1 = VENTRICLES[name]
    k0 = CENTRE_SLICE - slices // 2
    return f"{i0},{j0},{k0},{i1},{j1},{k0 + slices - 1}"


def main(argv=None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=None, help="output folder (default: a new temp folder)")
    parser.add_argument("--slices", type=int, default=8, help="axial slices per box (fewer is faster)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    parser.add_argument("--backend", default="auto", help="LiteMedSAM encoder: auto | onnx | torch")
    parser.add_argument("--qc", action="store_true", help="also write PNG overlays under OUT/qc")
    args = parser.parse_args(argv)

    import nilearn.datasets  # imported here so `--help` works without nilearn

    image = Path(nilearn.datasets.MNI152_FILE_PATH)
    out = args.output or Path(tempfile.mkdtemp(prefix="segkit_medsam_api_"))
    out.mkdir(parents=True, exist_ok=True)
    common = dict(device=args.device, backend=args.backend, qc=out / "qc" if args.qc else None)

    # One request per structure. An explicit .nii.gz output keeps the three masks apart (by default
    # every mask of this input would be named <input>_seg.nii.gz).
    requests = {
        "left_ventricle": [box("left", args.slices)],
        "right_ventricle": [box("right", args.slices)],
        "both_ventricles": [box("left", args.slices), box("right", args.slices)],  # one mask, two boxes
    }
    masks = {}
    for name, boxes in requests.items():
        started = time.perf_counter()
        written = api.segment("medsam", [image], box=boxes, output=out / f"{name}.nii.gz", **common)
        seconds = time.perf_counter() - started
        masks[name] = written[0]
        # the first call includes loading the model; the others reuse it (same weights, device, backend)
        print(f"{name:16s} {len(boxes)} box(es) x {args.slices} slices: {seconds:5.1f} s -> {written[0]}")
    return masks


if __name__ == "__main__":
    main()
