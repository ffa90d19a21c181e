"""Segmentation metrics (numpy/scipy only, never torch): overlap, surface distances, lesion-wise."""

from segkit.metrics.lesionwise import connected_lesions, lesion_detection
from segkit.metrics.overlap import overlap_metrics
from segkit.metrics.regions import brats_regions
from segkit.metrics.surface import SurfaceDistances, surface_distances, surface_metrics

__all__ = [
    "SurfaceDistances",
    "brats_regions",
    "connected_lesions",
    "lesion_detection",
    "overlap_metrics",
    "surface_distances",
    "surface_metrics",
]
