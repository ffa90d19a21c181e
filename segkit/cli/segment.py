"""`segkit segment`: run a task on an image and write its masks beside it (or under -o)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from segkit.cli.main import app


@app.command("segment")
def segment(
    inputs: List[Path] = typer.Option(..., "-i", "--input", help="Input image (NIfTI, NRRD, MHA, or a DICOM folder)."),
    task: str = typer.Option(..., "-task", "--task", "-t", help="Task name (see `segkit list-tasks`)."),
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
) -> None:
    """Segment an image with a task's model. Outputs keep the input's exact shape and affine."""
    import sys

    from segkit import api

    request = api.SegmentRequest(
        inputs=inputs,
        task=task,
        output=output,
        boxes=list(box or []),
        boxes_mm=list(box_mm or []),
        prompt_mask=prompt_mask,
        slice_index=slice_index,
        axis=axis,
        qc_dir=qc,
        device=device,
        backend=backend,
        command_line=" ".join(["segkit", *sys.argv[1:]]),
    )
    for written in api.segment(request):
        typer.echo(str(written))
