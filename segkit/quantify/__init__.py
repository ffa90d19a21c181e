"""Turn masks into numbers: volumes, intensities, fat fraction, lesion and corpus callosum measures.

numpy/scipy/nibabel only (never torch). Empty masks give None values with a status, never 0.
"""

from segkit.quantify.fat import fat_fraction_dixon, fat_fraction_map
from segkit.quantify.intensity import intensity_stats
from segkit.quantify.morphometry import corpus_callosum_measures, lesion_measures
from segkit.quantify.volumes import label_volumes

__all__ = [
    "corpus_callosum_measures",
    "fat_fraction_dixon",
    "fat_fraction_map",
    "intensity_stats",
    "label_volumes",
    "lesion_measures",
]
