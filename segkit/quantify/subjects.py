"""Quantify one subject from files: the library behind `segkit quantify`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segkit.errors import ImageError, SegkitError
from segkit.metrics.regions import labels_in
from segkit.quantify.fat import fat_fraction_dixon, fat_fraction_map
from segkit.quantify.intensity import intensity_stats, masked_values
from segkit.quantify.morphometry import corpus_callosum_measures, lesion_measures
from segkit.quantify.volumes import label_volumes

class QuantifyError(SegkitError):
    """Bad quantify input: missing image for a measure, empty manifest, bad option."""


@dataclass
class Subject:
    mask: Path
    image: Path | None = None
    fat: Path | None = None
    water: Path | None = None
    ff: Path | None = None
    cord: Path | None = None
    name: str | None = None


@dataclass
class Measures:
    volume: bool = True
    intensity: bool = False
    fat_ratio: bool = False
    lesions: bool = False
    cc: bool = False
    labels: list[int] | None = None
    hu_window: tuple[float, float] | None = None
    erode: int = 0
    noise_threshold: float | None = None
    ff_scale: float | None = None
    label_names: dict[int, str] | None = None  # value -> name (e.g. a task's registry labels); else the sidecar's
    extra: dict = field(default_factory=dict)


def subject_name(path: Path) -> str:
    from segkit.metrics.evaluate import case_id

    return case_id(Path(path))


def _check_on_mask_grid(image, mask, role: str) -> None:
    from segkit.io.grid import check_same_grid

    check_same_grid(image, mask, role, reference_what="the mask", fix="resample it onto the mask grid first")


def _voxels_on_mask_grid(path: Path, mask, role: str, keep_integers: bool = False):
    """The image's voxels, checked to lie on the mask's grid, as float64; with keep_integers, an
    unscaled integer NIfTI stays in its stored type (a 512x512x800 int16 CT: 400 MB instead of
    1.6 GB), for callers that convert only the voxels they select (masked_values: the same values)."""
    from segkit.io.image import load_image

    image = load_image(path, dtype=np.float64, allow_nonfinite=False, keep_integers=keep_integers)
    _check_on_mask_grid(image, mask, role)
    return image.data


def _binary(mask, role: str) -> np.ndarray:
    values = np.unique(mask.data)
    if not set(values.tolist()) <= {0, 1}:
        raise ImageError(f"{mask.path}: {role} must be binary (0/1) but has values {values[:6].tolist()}; "
                         "extract one label first")
    return mask.data.astype(bool)


def quantify_subject(subject: Subject, measures: Measures) -> list[dict]:
    from segkit.io.image import load_label_map

    mask = load_label_map(subject.mask)
    name = subject.name or subject_name(subject.mask)
    if measures.lesions:
        return [{"subject": name, "label": 1, **row} for row in _lesion_rows(subject, mask)]
    if measures.cc:
        cc = corpus_callosum_measures(_binary(mask, "corpus callosum mask"), mask.affine, mask.spacing)
        return [{"subject": name, "label": 1, **cc}]
    labels = measures.labels or [int(v) for v in labels_in(mask.data)] or [1]
    rows = label_volumes(mask.data, mask.voxel_volume_mm3, labels)
    if measures.intensity:
        image = _voxels_on_mask_grid(subject.image, mask, "image", keep_integers=True)  # masked_values converts
        for row in rows:
            values = masked_values(image, mask.data == row["label"], measures.erode, measures.hu_window)
            row.update(intensity_stats(values))
            if row["n_voxels"] == 0 and row["status"] == "ok":
                row["status"] = "no_voxels_after_erode_or_window"
    if measures.fat_ratio:
        fat_values = _fat_function(subject, mask, measures)
        for row in rows:
            row.update(fat_values(mask.data == row["label"]))
    if not measures.volume:
        for row in rows:
            row.pop("voxel_count"), row.pop("volume_ml")
    names = _names(subject, measures)
    return [{"subject": name, **({"label_name": names.get(row["label"])} if names else {}), **row} for row in rows]


def _names(subject: Subject, measures: Measures) -> dict[int, str]:
    from segkit.quantify.names import sidecar_label_names

    return measures.label_names or sidecar_label_names(subject.mask)


def _fat_function(subject: Subject, mask, measures: Measures):
    if subject.ff is not None:
        ff = _voxels_on_mask_grid(subject.ff, mask, "fat-fraction map")
        from segkit.quantify.fat import detect_ff_scale

        scale = measures.ff_scale or detect_ff_scale(ff, subject.ff)
        return lambda region: fat_fraction_map(ff, region, scale)
    if subject.fat is None or subject.water is None:
        raise QuantifyError(f"{subject.mask}: --fat-ratio needs --fat F --water W (Dixon) or --ff FF (fat-fraction map)")
    fat = _voxels_on_mask_grid(subject.fat, mask, "fat image")
    water = _voxels_on_mask_grid(subject.water, mask, "water image")
    from segkit.quantify.fat import default_noise_threshold

    threshold = measures.noise_threshold
    if threshold is None:
        threshold = default_noise_threshold(fat + water)
    return lambda region: fat_fraction_dixon(fat, water, region, threshold)


def _lesion_rows(subject: Subject, mask) -> list[dict]:
    from segkit.io.image import load_label_map

    lesion = _binary(mask, "lesion mask")
    if lesion.ndim != 3:
        raise ImageError(f"{mask.path}: lesion analysis needs a 3D mask, got shape {mask.shape}")
    cord = None
    if subject.cord is not None:
        cord_image = load_label_map(subject.cord)
        _check_on_mask_grid(cord_image, mask, "cord mask")
        cord = _binary(cord_image, "cord mask")
    rows = lesion_measures(lesion, mask.affine, mask.spacing, cord)
    if not rows:
        empty = {"lesion": None, "status": "no_lesion", "volume_ml": None, "length_si_mm": None,
                 "max_axial_width_mm": None, "equivalent_diameter_mm": None}
        if cord is not None:
            empty["max_axial_damage_ratio"] = None
        return [empty]
    return [{"lesion": row.pop("lesion"), "status": "ok", **row} for row in rows]


_SUBJECT_TABLE_COLUMNS = ("subject", "mask", "image", "fat", "water", "ff", "cord")


def read_subject_table(path) -> list[Subject]:
    """A CSV with a 'mask' column and optional subject,image,fat,water,ff,cord; paths relative to it
    (segkit.cohort.manifest: the reader `segment` and `eval` use too)."""
    from segkit.cohort.manifest import read_manifest

    rows = read_manifest(path, required=("mask",), path_columns=_SUBJECT_TABLE_COLUMNS[1:], what="subjects",
                         error=QuantifyError, line="has no mask path",
                         header="a 'mask' column (optional: subject, image, fat, water, ff, cord)")
    return [Subject(name=row.get("subject") or None, **{key: row.get(key) for key in _SUBJECT_TABLE_COLUMNS[1:]})
            for row in rows]
