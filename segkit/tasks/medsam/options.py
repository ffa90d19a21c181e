"""What `segkit segment -task medsam` takes (no torch here: the CLI builds its help from this)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.tasks.common_options import backend_option, modality_option, window_option
from segkit.tasks.options import TaskOptions, option


@dataclass(frozen=True)
class SegmentOptions(TaskOptions):
    runner = "segkit.tasks.medsam.task:MedsamRunner"

    box: list = option(None, "--box", multiple=True,
                       help="Box in voxel indices of the file's array order: i0,j0,i1,j1 (2D) or i0,j0,k0,i1,j1,k1 (3D).")
    box_mm: list = option(None, "--box-mm", multiple=True,
                          help="Box corners in world mm (RAS): x0,y0,x1,y1 (2D) or x0,y0,z0,x1,y1,z1 (3D).")
    prompt_mask: Path | None = option(None, "--prompt-mask", kind=Path, reads_file=True,
                                      help="Coarse mask: one box per label, or per connected component of a binary mask.")
    slice_index: int | None = option(None, "--slice", kind=int, help="Segment only this slice of a 3D image (2D box).")
    axis: int = option(2, "--axis", minimum=0, maximum=2, help="Array axis that slices are taken along.")
    backend: str = backend_option()
    window: str | None = window_option()
    modality: str = modality_option()

    def validate(self) -> None:
        from segkit.tasks.medsam.window import parse_window

        super().validate()
        parse_window(self.window)  # a bad --window is exit 2 before any image is read
