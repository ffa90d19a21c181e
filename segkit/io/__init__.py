"""Image I/O that keeps geometry: readers, orientation changes and atomic writers."""

from segkit.io.image import Image, load_image, load_label_map
from segkit.io.orientation import Reorientation, reorientation_to
from segkit.io.writer import atomic_output, atomic_write_json, atomic_write_text, output_path_for, save_label_map

__all__ = [
    "Image",
    "Reorientation",
    "atomic_output",
    "atomic_write_json",
    "atomic_write_text",
    "load_image",
    "load_label_map",
    "output_path_for",
    "reorientation_to",
    "save_label_map",
]
