"""`segkit segment`: run a task on an image and write its masks beside it (or under -o)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from segkit.cli.main import app


@app.command("segment")
def segment(
    inputs: List[Path] = typer.Option(..., "-i", "--input", help="Input image (NIfTI, NRRD, MHA, or a DICOM folder)."),
    task: Optional[str] = typer.Option(
        None, "-task", "--task", "-t", help="Task name (see `segkit list-tasks`); optional with --model-dir."
    ),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Output file (.nii.gz) or folder. Default: beside the input."
    ),
    box: Optional[List[str]] = typer.Option(
        None, "--box", help="Box in voxel indices of the file's array order: i0,j0,i1,j1 (2D) or i0,j0,k0,i1,j1,k1 (3D)."
    ),
    box_mm: Optional[List[str]] = typer.Option(
        None, "--box-mm", help="Box corners in world mm (RAS): x0,y0,x1,y1 (2D) or x0,y0,z0,x1,y1,z1 (3D)."
    ),
    prompt_mask: Optional[Path] = typer.Option(
        None, "--prompt-mask", help="Coarse mask: one box per label, or per connected component of a binary mask."
    ),
    slice_index: Optional[int] = typer.Option(None, "--slice", help="Segment only this slice of a 3D image (2D box)."),
    axis: int = typer.Option(2, "--axis", min=0, max=2, help="Array axis that slices are taken along."),
    qc: Optional[Path] = typer.Option(None, "--qc", help="Write PNG overlays of the result on three planes here."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N] | mps"),
    backend: str = typer.Option("auto", "--backend", help="auto | onnx | torch (medsam image encoder)."),
    folds: Optional[List[str]] = typer.Option(
        None, "--folds", help="nnU-Net folds to ensemble (repeat or comma-separate; default: every fold found)."
    ),
    tta: bool = typer.Option(False, "--tta", help="nnU-Net test-time mirroring (slower, often slightly better)."),
    largest: bool = typer.Option(False, "--largest", help="Keep only the largest connected object of each label."),
    fill_holes: bool = typer.Option(False, "--fill-holes", help="Fill holes inside each label's mask."),
    remove_small: Optional[str] = typer.Option(
        None, "--remove-small", help="Remove objects smaller than this from each label: e.g. 5mm3 or 5vox."
    ),
    model_dir: Optional[Path] = typer.Option(
        None, "--model-dir", help="Run a trained nnU-Net v2 model folder (or its unpacked zip) directly."
    ),
    bval: Optional[Path] = typer.Option(None, "--bval", help="FSL .bval of a DWI input (cc_fodf); peaks are computed."),
    bvec: Optional[Path] = typer.Option(None, "--bvec", help="FSL .bvec of a DWI input (cc_fodf)."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Brain mask of a DWI input (cc_fodf); default: median_otsu."),
    save_peaks: bool = typer.Option(False, "--save-peaks", help="Keep the peaks computed from the DWI (<input>_peaks.nii.gz)."),
    model: Optional[Path] = typer.Option(
        None, "--model", help="A model package folder trained with `segkit train` (cc_fodf: model.pt + model_card.json)."
    ),
    support: Optional[Path] = typer.Option(None, "--support", help="lpm_nnsam2: support image with annotated slice(s)."),
    support_mask: Optional[Path] = typer.Option(
        None, "--support-mask", help="lpm_nnsam2: support labels, 1 right / 2 left LPM on one or a few slices, 0 elsewhere."
    ),
    propagator: str = typer.Option("sam2", "--propagator", help="lpm_nnsam2: sam2 (SAM 2.1 video) | litemedsam (offline)."),
) -> None:
    """Segment an image with a task's model. Outputs keep the input's exact shape and affine."""
    import sys

    from segkit import api
    from segkit.errors import SegkitError

    if not task and model_dir is None:
        raise SegkitError("Missing option '-task' (see `segkit list-tasks`), or give --model-dir DIR")
    request = api.SegmentRequest(
        inputs=inputs,
        task=task or "",
        output=output,
        boxes=list(box or []),
        boxes_mm=list(box_mm or []),
        prompt_mask=prompt_mask,
        slice_index=slice_index,
        axis=axis,
        qc_dir=qc,
        device=device,
        backend=backend,
        folds=[f for item in (folds or []) for f in item.split(",") if f.strip()],
        tta=tta,
        largest=largest,
        fill_holes=fill_holes,
        remove_small=remove_small,
        model_dir=model_dir,
        bval=bval,
        bvec=bvec,
        mask=mask,
        save_peaks=save_peaks,
        model=model,
        support=support,
        support_mask=support_mask,
        propagator=propagator,
        command_line=" ".join(["segkit", *sys.argv[1:]]),
    )
    for written in api.segment(request):
        typer.echo(str(written))
