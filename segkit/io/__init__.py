"""Image I/O that keeps geometry: readers, orientation changes, the same-grid check and atomic writers."""

from segkit.io.grid import check_same_grid, same_grid
from segkit.io.image import Image, load_image, load_label_map
from segkit.io.orientation import Reorientation, reorientation_to
from segkit.io.writer import atomic_output, atomic_write_json, atomic_write_text, output_path_for, save_label_map, save_nifti

__all__ = [
    "Image",
    "Reorientation",
    "atomic_output",
    "atomic_write_json",
    "atomic_write_text",
    "check_same_grid",
    "load_image",
    "load_label_map",
    "output_path_for",
    "reorientation_to",
    "same_grid",
    "save_label_map",
    "save_nifti",
]
