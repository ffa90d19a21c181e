"""`segkit eval`: compare predicted masks with references; one table row per (case,) label or region.

Only numpy, scipy and nibabel are used, so the command starts fast and never imports torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from segkit.cli.app import app
from segkit.cli.cohort_input import HELP
from segkit.runtime.memory import MAX_MEMORY_HELP


def _parse_labels(text: str) -> list[int]:
    from segkit.metrics.evaluate import EvalError

    try:
        labels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise EvalError(f"--labels {text!r}: give comma-separated integers, e.g. 1,2") from None
    if not labels or any(v <= 0 for v in labels):
        raise EvalError(f"--labels {text!r}: give positive integer labels, e.g. 1,2")
    return labels


def _regions(labels: Optional[str], regions: Optional[str], brats_legacy: bool):
    from segkit.metrics.evaluate import EvalError
    from segkit.metrics.regions import brats_regions, labels_as_regions

    if labels and regions:
        raise EvalError("use either --labels or --regions, not both")
    if regions:
        if regions.lower() != "brats":
            raise EvalError(f"--regions {regions!r}: the only region set is 'brats' (WT, TC, ET)")
        return brats_regions(legacy_et_label_4=brats_legacy)
    return labels_as_regions(_parse_labels(labels)) if labels else None


def _cases(pred, ref, pred_dir, ref_dir, manifest, cohort: dict):
    from segkit import api
    from segkit.cli.cohort_input import cohort_values
    from segkit.metrics.evaluate import EvalError, match_folders, read_manifest

    found = cohort_values(cohort)
    modes = [bool(pred or ref), bool(pred_dir or (ref_dir and not cohort["glob"])), bool(manifest),
             bool(cohort["bids"]), bool(cohort["glob"])]
    if sum(modes) != 1:
        raise EvalError("give exactly one input: --pred/--ref, --pred-dir/--ref-dir, --manifest, --bids or --glob")
    if modes[0]:
        if not (pred and ref):
            raise EvalError("--pred and --ref go together")
        return None, [(None, pred, ref)]
    if modes[1]:
        if not (pred_dir and ref_dir):
            raise EvalError("--pred-dir and --ref-dir go together")
        return "batch", match_folders(pred_dir, ref_dir)
    if found is not None:
        return "batch", api.eval_cohort_pairs(**found, ref_dir=ref_dir)
    return "batch", read_manifest(manifest)


@app.command("eval")
def eval_command(
    pred: Optional[Path] = typer.Option(None, "--pred", help="Predicted label map."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="Reference label map."),
    pred_dir: Optional[Path] = typer.Option(None, "--pred-dir", help="Folder of predictions, matched to --ref-dir by file name."),
    ref_dir: Optional[Path] = typer.Option(None, "--ref-dir", help="Folder of references."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="CSV with columns pred,ref[,case]."),
    bids: Optional[Path] = typer.Option(None, "--bids", help="A BIDS dataset: segkit's masks (DIR/derivatives/segkit, --seg-suffix) against the reference labels (DIR/derivatives/labels, --ref-suffix), paired by the image name they extend."),
    participant_label: Optional[List[str]] = typer.Option(None, "--participant-label", help=HELP["participant_label"]),
    session: Optional[List[str]] = typer.Option(None, "--session", help=HELP["session"]),
    datatype: Optional[str] = typer.Option(None, "--datatype", help=HELP["datatype"]),
    seg_suffix: Optional[str] = typer.Option(None, "--seg-suffix", help=HELP["seg_suffix"]),
    seg_derivative: Optional[str] = typer.Option(None, "--seg-derivative", help=HELP["seg_derivative"]),
    ref_suffix: Optional[str] = typer.Option(None, "--ref-suffix", help="With --bids or --glob: the suffix the reference labels add to the image's name (with --bids default seg-manual: sub-01_T2w_seg-manual.nii.gz)."),
    ref_derivative: Optional[str] = typer.Option(None, "--ref-derivative", help="With --bids: the references' folder, a name under DIR/derivatives/ (default labels) or a path."),
    glob: Optional[str] = typer.Option(None, "--glob", help="Predictions matching this pattern (quote it; ** recurses), each paired with the reference in --ref-dir of the same name (less --seg-suffix/--ref-suffix)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Labels to evaluate, e.g. 1,2 (default: all present)."),
    regions: Optional[str] = typer.Option(None, "--regions", help="'brats': WT={1,2,3}, TC={1,3}, ET={3}."),
    brats_legacy: bool = typer.Option(False, "--brats-legacy", help="BraTS before 2023: ET is label 4."),
    metrics: str = typer.Option("all", "--metrics", help="Comma list: dice,iou,precision,recall,tp,fp,fn,volume,hd,hd95,assd,masd,nsd, or overlap/surface/all; add brats_lesionwise for the BraTS challenge's lesion-wise metrics (e.g. all,brats_lesionwise)."),
    tolerance_mm: float = typer.Option(2.0, "--tolerance-mm", help="NSD tolerance in mm."),
    surface: str = typer.Option("surfel", "--surface", help="Surface definition: surfel (DeepMind, area-weighted), voxel (MONAI boundary voxels) or brats (the BraTS challenge's: boundary voxels, pooled HD95)."),
    lesions: bool = typer.Option(False, "--lesions", help="Add lesion-wise detection (26-connected, ISLES'22 F1)."),
    lesion_table: Optional[Path] = typer.Option(None, "--lesion-table", help="Write the per-lesion detection table here (.tsv/.csv/.json)."),
    resample_pred: bool = typer.Option(False, "--resample-pred", help="Resample the prediction onto the reference grid (nearest neighbour)."),
    no_summary: bool = typer.Option(False, "--no-summary", help="Batch mode: omit the mean/std/median rows."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MAX_MEMORY_HELP),
    fmt: str = typer.Option("tsv", "--format", help="tsv, csv or json."),
) -> None:
    """Compare predictions with references: overlap, surface distances (mm) and lesion-wise metrics."""
    from segkit import api
    from segkit.metrics.evaluate import EvalError, summarize
    from segkit.runtime.memory import apply_memory_cap, keep_freed_memory
    from segkit.tables import TABLE_FORMATS, columns_of, save_table, write_table

    if fmt not in TABLE_FORMATS:
        raise EvalError(f"--format {fmt!r}: choose tsv, csv or json")
    if lesion_table and not lesions:
        raise EvalError("--lesion-table needs --lesions")
    region_map = _regions(labels, regions, brats_legacy)
    cohort = dict(bids=bids, glob=glob, participant_label=participant_label, session=session, datatype=datatype,
                  seg_suffix=seg_suffix, seg_derivative=seg_derivative, ref_suffix=ref_suffix, ref_derivative=ref_derivative)
    mode, cases = _cases(pred, ref, pred_dir, ref_dir, manifest, cohort)
    if lesion_table:
        read = [p for _, pred_path, ref_path in cases for p in (pred_path, ref_path)]
        api.check_outputs([lesion_table], read + ([manifest] if manifest else []))
    if not apply_memory_cap(max_memory):  # the inputs are found and checked, none is read yet
        keep_freed_memory()
    rows, lesion_rows = api.evaluate(cases, regions=region_map, metrics=metrics, tolerance_mm=tolerance_mm,
                                     surface=surface, lesions=lesions, resample_pred=resample_pred)
    options_columns = api.eval_columns(metrics, lesions)
    first = (["case"] if mode else []) + ["label", "status"] + options_columns
    if mode and not no_summary:
        rows += summarize(rows, options_columns)
    if lesion_table:
        save_table(lesion_rows, lesion_table, columns=columns_of(lesion_rows, (["case"] if mode else []) + ["label", "source", "lesion", "volume_ml", "overlap_voxels", "detected"]))
    write_table(rows, sys.stdout, fmt, columns_of(rows, first))
