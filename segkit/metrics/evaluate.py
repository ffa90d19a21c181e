"""Evaluate predicted label maps against references: one row per (case,) label or region.

This is the library behind `segkit eval`; it never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import ImageError, SegkitError
from segkit.metrics.lesionwise import lesion_detection
from segkit.metrics.overlap import overlap_metrics
from segkit.metrics.regions import present_labels, region_mask
from segkit.metrics.surface import DEFINITION_LABELS, surface_distances, surface_metrics

OVERLAP_METRICS = ("dice", "iou", "precision", "recall", "tp", "fp", "fn", "volume")
SURFACE_METRICS = ("hd", "hd95", "assd", "masd", "nsd")
ALL_METRICS = OVERLAP_METRICS + SURFACE_METRICS
OPT_IN_METRICS = ("brats_lesionwise",)  # not in "all": asked for by name (segkit.metrics.brats_lesionwise)
_VOLUME_COLUMNS = ("ref_volume_ml", "pred_volume_ml", "volume_diff_ml", "abs_volume_diff_ml")
_SURFACE_COLUMNS = {"hd": "hd_mm", "hd95": "hd95_mm", "assd": "assd_mm", "masd": "masd_mm", "nsd": "nsd"}
LESION_COLUMNS = ("lesion_f1", "lesion_tp", "lesion_fp", "lesion_fn", "n_ref_lesions", "n_pred_lesions",
                  "lesion_count_abs_diff")
AFFINE_TOLERANCE_MM = 1e-3


class EvalError(SegkitError):
    """Bad evaluation input: unknown metric, empty manifest, unmatched cases."""


@dataclass(frozen=True)
class EvalOptions:
    metrics: tuple[str, ...] = ALL_METRICS
    tolerance_mm: float = 2.0
    surface: str = "surfel"
    lesions: bool = False

    @property
    def wants_overlap(self) -> bool:
        return any(m in OVERLAP_METRICS for m in self.metrics)

    @property
    def wants_surface(self) -> bool:
        return any(m in SURFACE_METRICS for m in self.metrics)

    def metric_columns(self) -> list[str]:
        columns: list[str] = []
        for name in self.metrics:
            if name == "volume":
                columns += _VOLUME_COLUMNS
            elif name in _SURFACE_COLUMNS:
                columns.append(_SURFACE_COLUMNS[name])
            else:
                columns.append(name)
        if "nsd" in self.metrics:
            columns.append("nsd_tolerance_mm")
        if self.wants_surface:
            columns.append("surface_definition")
        if self.lesions:
            columns += LESION_COLUMNS
        if "brats_lesionwise" in self.metrics:
            from segkit.metrics.brats_lesionwise import COLUMNS

            columns = [c for c in columns if c != "brats_lesionwise"] + list(COLUMNS)
        return columns


def parse_metrics(text: str | None) -> tuple[str, ...]:
    """'all' (default), 'overlap', 'surface' or a comma list of metric names; 'brats_lesionwise' adds
    the BraTS challenge's lesion-wise metrics (e.g. 'all,brats_lesionwise')."""
    if not text or text.strip() == "all":
        return ALL_METRICS
    names: list[str] = []
    for item in (part.strip().lower() for part in text.split(",") if part.strip()):
        group = {"overlap": OVERLAP_METRICS, "surface": SURFACE_METRICS, "all": ALL_METRICS}.get(item, (item,))
        for name in group:
            if name not in ALL_METRICS + OPT_IN_METRICS:
                raise EvalError(f"unknown metric {name!r}; choose from {', '.join(ALL_METRICS + OPT_IN_METRICS)}, "
                                "overlap, surface, all")
            if name not in names:
                names.append(name)
    return tuple(names)


def evaluate_label_maps(ref_map, pred_map, spacing, voxel_volume_mm3, regions, options: EvalOptions):
    """Rows (one per region) and the per-lesion table for two label arrays on the same grid.

    `regions` maps a row name to the label values it unites; None means every label present.
    """
    if regions is None:
        regions = {str(v): (v,) for v in present_labels(ref_map, pred_map)}
    rows, lesion_rows = [], []
    for name, values in regions.items():
        ref = region_mask(ref_map, values)
        pred = region_mask(pred_map, values)
        row, lesions = _evaluate_binary(ref, pred, spacing, voxel_volume_mm3, options)
        rows.append({"label": name, **row})
        lesion_rows += [{"label": name, **lesion} for lesion in lesions]
    return rows, lesion_rows


def _evaluate_binary(ref, pred, spacing, voxel_volume_mm3, options: EvalOptions):
    values = overlap_metrics(ref, pred, voxel_volume_mm3) if options.wants_overlap else {}
    status = _empty_status(ref, pred)
    if options.wants_surface:
        surface = surface_metrics(surface_distances(ref, pred, spacing, options.surface), options.tolerance_mm)
        values.update({_SURFACE_COLUMNS[k]: v for k, v in surface.items() if k in _SURFACE_COLUMNS})
        values["nsd_tolerance_mm"] = float(options.tolerance_mm)
        values["surface_definition"] = DEFINITION_LABELS[options.surface]
    if "brats_lesionwise" in options.metrics:
        from segkit.metrics.brats_lesionwise import brats_lesionwise

        values.update(brats_lesionwise(ref, pred, spacing))
    lesions = []
    if options.lesions:
        summary, lesions = lesion_detection(ref, pred, voxel_volume_mm3)
        values.update(summary)
    row = {"status": status}
    row.update({column: values.get(column) for column in options.metric_columns()})
    return row, lesions


def _empty_status(ref: np.ndarray, pred: np.ndarray) -> str:
    ref_any, pred_any = bool(ref.any()), bool(pred.any())
    if ref_any and pred_any:
        return "ok"
    if not ref_any and not pred_any:
        return "both_empty"
    return "ref_empty" if not ref_any else "pred_empty"


# --- images ---------------------------------------------------------------------------------


def check_same_grid(pred, ref) -> None:
    """Raise ImageError naming what differs (shape or affine) and pointing to --resample-pred."""
    hint = "pass --resample-pred to resample the prediction onto the reference grid (nearest neighbour)"
    if pred.shape != ref.shape:
        raise ImageError(f"{pred.path}: shape {pred.shape} differs from the reference {ref.path} {ref.shape}; {hint}")
    worst = float(np.max(np.abs(pred.affine - ref.affine)))
    if worst > AFFINE_TOLERANCE_MM:
        raise ImageError(
            f"{pred.path}: affine differs from the reference {ref.path} by up to {worst:.4g} mm "
            f"(tolerance {AFFINE_TOLERANCE_MM} mm); {hint}"
        )


def resample_nearest(moving, target) -> np.ndarray:
    """`moving`'s labels on `target`'s voxel grid by nearest neighbour (0 outside `moving`)."""
    from scipy import ndimage

    ndim = target.data.ndim
    world_to_moving = np.linalg.inv(moving.affine) @ target.affine  # target voxel -> moving voxel
    if ndim == 2:  # in-plane part only; the third axis is the single slice
        world_to_moving = world_to_moving[np.ix_([0, 1, 3], [0, 1, 3])]
    matrix, offset = world_to_moving[:ndim, :ndim], world_to_moving[:ndim, ndim]
    data = moving.data if moving.data.ndim == ndim else moving.data.reshape(moving.data.shape[:ndim])
    return ndimage.affine_transform(
        data, matrix, offset=offset, output_shape=target.data.shape, order=0, mode="constant", cval=0
    )


def load_pair(pred_path, ref_path, resample_pred: bool = False):
    """(pred array, ref Image) on the reference grid; geometry must match unless resampling."""
    from segkit.io.image import load_label_map

    # header=False: nothing here writes an image back, so plain NIfTI files are read without nibabel
    ref = load_label_map(ref_path, header=False)
    pred = load_label_map(pred_path, header=False)
    if resample_pred:
        if pred.shape != ref.shape or not np.allclose(pred.affine, ref.affine, atol=AFFINE_TOLERANCE_MM, rtol=0):
            return resample_nearest(pred, ref), ref
        return pred.data, ref
    check_same_grid(pred, ref)
    return pred.data, ref


def evaluate_files(pred_path, ref_path, regions, options: EvalOptions, resample_pred: bool = False):
    pred_data, ref = load_pair(pred_path, ref_path, resample_pred)
    return evaluate_label_maps(ref.data, pred_data, ref.spacing, ref.voxel_volume_mm3, regions, options)


# --- batches --------------------------------------------------------------------------------

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


def case_id(path: Path) -> str:
    name = path.name
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def match_folders(pred_dir, ref_dir) -> list[tuple[str, Path, Path]]:
    """(case, pred, ref) for every reference image; a reference without prediction is an error."""
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    for folder in (pred_dir, ref_dir):
        if not folder.is_dir():
            raise EvalError(f"{folder}: not a folder")
    refs = {case_id(p): p for p in sorted(ref_dir.iterdir()) if p.name.lower().endswith(_IMAGE_SUFFIXES)}
    preds = {case_id(p): p for p in sorted(pred_dir.iterdir()) if p.name.lower().endswith(_IMAGE_SUFFIXES)}
    if not refs:
        raise EvalError(f"{ref_dir}: no reference images (.nii.gz, .nii, .nrrd, .mha)")
    missing = sorted(set(refs) - set(preds))
    if missing:
        raise EvalError(
            f"{pred_dir}: no prediction for {len(missing)} reference case(s), e.g. {missing[0]!r}; "
            "predictions must have the reference file names"
        )
    return [(case, preds[case], refs[case]) for case in sorted(refs)]


def read_manifest(path) -> list[tuple[str, Path, Path]]:
    """A CSV with columns pred, ref and optionally case; relative paths are from the manifest's folder
    (segkit.cohort.manifest: the reader `segment` and `quantify` use too)."""
    from segkit.cohort.manifest import read_manifest as read_rows

    rows = read_rows(path, required=("pred", "ref"), path_columns=("pred", "ref"), error=EvalError,
                     header="columns 'pred' and 'ref' (and optionally 'case')", line="needs both a pred and a ref path")
    return [(row.get("case") or case_id(row["ref"]), row["pred"], row["ref"]) for row in rows]


def summarize(rows: list[dict], metric_columns: list[str]) -> list[dict]:
    """Mean, std (ddof=1) and median over cases per label, ignoring nulls; counts of empty masks."""
    summary = []
    labels = list(dict.fromkeys(row["label"] for row in rows))
    numeric = [c for c in metric_columns if c not in ("surface_definition", "lw_status")]
    for label in labels:
        group = [row for row in rows if row["label"] == label]
        counts = {
            "n_cases": len(group),
            "n_ref_empty": sum(row["status"] in ("ref_empty", "both_empty") for row in group),
            "n_pred_empty": sum(row["status"] in ("pred_empty", "both_empty") for row in group),
        }
        for statistic in ("mean", "std_ddof1", "median"):
            out = {"case": statistic, "label": label, "status": "summary"}
            for column in numeric:
                values = np.array([row[column] for row in group if row.get(column) is not None], dtype=float)
                out[column] = _statistic(values, statistic)
            for column in metric_columns:
                if column not in numeric:
                    out[column] = group[0].get(column)
            out.update(counts)
            summary.append(out)
    return summary


def _statistic(values: np.ndarray, statistic: str):
    if values.size == 0 or (statistic == "std_ddof1" and values.size < 2):
        return None
    if statistic == "mean":
        return float(np.mean(values))
    if statistic == "median":
        return float(np.median(values))
    return float(np.std(values, ddof=1))
