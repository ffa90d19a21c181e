"""`segkit quantify`: masks to numbers (volumes, intensities, fat fraction, lesions, CC).

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


def _pairs(option: str, values: list, count: int) -> list:
    from segkit.quantify.subjects import QuantifyError

    if not values:
        return [None] * count
    if len(values) == 1:
        return list(values) * count  # one image for every mask (e.g. the right and left muscle of one subject)
    if len(values) != count:
        raise QuantifyError(f"{option} was given {len(values)} time(s) for {count} mask(s); give it once, or once per -m")
    return list(values)


def _window(text: Optional[str]):
    from segkit.quantify.subjects import QuantifyError

    if not text:
        return None
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise QuantifyError(f"--hu-window {text!r}: give LO,HI, e.g. -100,300") from None
    if lo > hi:
        raise QuantifyError(f"--hu-window {text!r}: LO must not exceed HI")
    return lo, hi


def _subjects(masks, images, fats, waters, ffs, cords, manifest, cohort: dict, intensity: bool):
    from segkit import api
    from segkit.cli.cohort_input import cohort_values
    from segkit.quantify.subjects import QuantifyError, Subject, read_subject_table

    found = cohort_values(cohort)
    if found is not None:
        if manifest or masks or images or fats or waters or ffs or cords:
            raise QuantifyError("with --bids or --glob the masks (and images) are found: leave out -m, -i, --fat, "
                                "--water, --ff, --cord and --manifest")
        return api.quantify_cohort_subjects(**found, images=intensity)
    if manifest and masks:
        raise QuantifyError("give masks either with -m or with --manifest, not both")
    if manifest:
        return read_subject_table(manifest)
    if not masks:
        raise QuantifyError("give at least one mask with -m MASK (or a --manifest CSV)")
    n = len(masks)
    columns = [_pairs(opt, vals, n) for opt, vals in
               (("-i", images), ("--fat", fats), ("--water", waters), ("--ff", ffs), ("--cord", cords))]
    return [Subject(mask, *extra) for mask, *extra in zip(masks, *columns)]


def _check_images_for(subjects, measures) -> None:
    """Every subject has the images its measures read, before any is read."""
    from segkit.quantify.subjects import QuantifyError

    for subject in subjects:
        if measures.intensity and subject.image is None:
            raise QuantifyError(f"{subject.mask}: --intensity needs an image (-i IMAGE, one per -m)")
        if measures.fat_ratio and subject.ff is None and (subject.fat is None or subject.water is None):
            raise QuantifyError(f"{subject.mask}: --fat-ratio needs --fat F --water W (Dixon) or --ff FF (fat-fraction map)")


def _check_measures_combine(volume: bool, intensity: bool, fat_ratio: bool, lesions: bool, cc: bool,
                            intensity_options: bool) -> None:
    """Refuse measures that do not go together, before any file is read."""
    from segkit.quantify.subjects import QuantifyError

    if (lesions or cc) and (volume or intensity or fat_ratio):
        raise QuantifyError("--lesions and --cc give their own rows; run them without --volume/--intensity/--fat-ratio")
    if lesions and cc:
        raise QuantifyError("run --lesions and --cc separately")
    if intensity_options and not intensity:
        raise QuantifyError("--hu-window and --erode apply to --intensity; add --intensity")


def _label_list(labels: Optional[str]):
    from segkit.quantify.subjects import QuantifyError

    try:
        label_list = [int(v) for v in labels.split(",") if v.strip()] if labels else None
    except ValueError:
        raise QuantifyError(f"--labels {labels!r}: give comma-separated integers") from None
    if label_list is not None and (not label_list or min(label_list) <= 0):
        raise QuantifyError(f"--labels {labels!r}: give positive integer labels")
    return label_list


def _task_names(task: Optional[str]):
    from segkit.quantify.names import task_label_names

    return task_label_names(task) if task else None


@app.command("quantify")
def quantify_command(
    masks: Optional[List[Path]] = typer.Option(None, "-m", "--mask", help="Label map or binary mask (repeat for several subjects)."),
    images: Optional[List[Path]] = typer.Option(None, "-i", "--image", help="Intensity image, one per -m."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="CSV with column mask and optional subject,image,fat,water,ff,cord."),
    bids: Optional[Path] = typer.Option(None, "--bids", help="A BIDS dataset: quantify segkit's masks in DIR/derivatives/segkit (--seg-suffix); --intensity reads the raw image each mask extends (sub-01_T2w.nii.gz for sub-01_T2w_sc_seg.nii.gz)."),
    participant_label: Optional[List[str]] = typer.Option(None, "--participant-label", help=HELP["participant_label"]),
    session: Optional[List[str]] = typer.Option(None, "--session", help=HELP["session"]),
    datatype: Optional[str] = typer.Option(None, "--datatype", help=HELP["datatype"]),
    seg_suffix: Optional[str] = typer.Option(None, "--seg-suffix", help=HELP["seg_suffix"]),
    seg_derivative: Optional[str] = typer.Option(None, "--seg-derivative", help=HELP["seg_derivative"]),
    glob: Optional[str] = typer.Option(None, "--glob", help="Masks matching this pattern (quote it; ** recurses); --intensity reads the image each mask's segkit sidecar names."),
    volume: bool = typer.Option(False, "--volume", help="Voxel count and mL per label (the default measure)."),
    intensity: bool = typer.Option(False, "--intensity", help="Mean, std (ddof=1), median, p5/p95, min/max, N in float64."),
    hu_window: Optional[str] = typer.Option(None, "--hu-window", help="With --intensity: keep voxels with LO <= value <= HI, e.g. -100,300."),
    erode: int = typer.Option(0, "--erode", min=0, help="With --intensity: erode each label mask by N voxels first."),
    fat_ratio: bool = typer.Option(False, "--fat-ratio", help="Signal fat fraction from --fat/--water or --ff."),
    fats: Optional[List[Path]] = typer.Option(None, "--fat", help="Dixon fat image, one per -m."),
    waters: Optional[List[Path]] = typer.Option(None, "--water", help="Dixon water image, one per -m."),
    ffs: Optional[List[Path]] = typer.Option(None, "--ff", help="Fat-fraction map (0-1, 0-100 or 0-1000, detected), one per -m."),
    noise_threshold: Optional[float] = typer.Option(None, "--noise-threshold", help="Dixon: use voxels with F+W above this (default 5% of the 99th percentile of F+W)."),
    lesions: bool = typer.Option(False, "--lesions", help="Per lesion: volume, S-I length, max axial width, equivalent diameter."),
    cords: Optional[List[Path]] = typer.Option(None, "--cord", help="With --lesions: cord mask for the max axial damage ratio, one per -m."),
    fat_suffix: Optional[str] = typer.Option(None, "--fat-suffix", help="With --bids: each mask's Dixon fat image is its raw image's name with the BIDS suffix replaced by this (fat: sub-01_acq-dixon_fat.nii.gz for sub-01_acq-dixon_T1w)."),
    water_suffix: Optional[str] = typer.Option(None, "--water-suffix", help="With --bids: the Dixon water image, named as for --fat-suffix."),
    ff_suffix: Optional[str] = typer.Option(None, "--ff-suffix", help="With --bids: a fat-fraction map, named as for --fat-suffix."),
    cord_suffix: Optional[str] = typer.Option(None, "--cord-suffix", help="With --bids and --lesions: the cord mask segkit wrote beside each lesion mask (sc_seg: sub-01_T2w_sc_seg.nii.gz)."),
    cc: bool = typer.Option(False, "--cc", help="Corpus callosum volume and mid-sagittal area (mm^2)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Labels to report, e.g. 1,2 (default: all present)."),
    task: Optional[str] = typer.Option(None, "-task", "--task", help="Name the rows' labels after this task's registry labels (a label map of several). Default: the mask's segkit sidecar, if any."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MAX_MEMORY_HELP),
    fmt: str = typer.Option("tsv", "--format", help="tsv, csv or json."),
) -> None:
    """Quantify masks: one row per (subject, label[, lesion]); units are in the column names."""
    from segkit import api
    from segkit.quantify.subjects import Measures, QuantifyError
    from segkit.runtime.memory import apply_memory_cap
    from segkit.tables import TABLE_FORMATS, columns_of, write_table

    if fmt not in TABLE_FORMATS:
        raise QuantifyError(f"--format {fmt!r}: choose tsv, csv or json")
    fat_ratio = fat_ratio or any((fats, waters, ffs, fat_suffix, water_suffix, ff_suffix))  # given for that measure only
    _check_measures_combine(volume, intensity, fat_ratio, lesions, cc, bool(hu_window or erode))
    measures = Measures(
        volume=volume or not (intensity or fat_ratio), intensity=intensity, fat_ratio=fat_ratio,
        lesions=lesions, cc=cc, labels=_label_list(labels), hu_window=_window(hu_window), erode=erode,
        noise_threshold=noise_threshold, label_names=_task_names(task),
    )
    cohort = dict(bids=bids, glob=glob, participant_label=participant_label, session=session, datatype=datatype,
                  seg_suffix=seg_suffix, seg_derivative=seg_derivative, fat_suffix=fat_suffix,
                  water_suffix=water_suffix, ff_suffix=ff_suffix, cord_suffix=cord_suffix)
    subjects = _subjects(masks, images, fats, waters, ffs, cords, manifest, cohort, intensity)
    _check_images_for(subjects, measures)
    apply_memory_cap(max_memory)  # the inputs are found and checked, none is read yet
    rows = api.quantify(subjects, measures)
    named = ["label_name"] if any("label_name" in row for row in rows) else []
    first = ["subject", "label", *named, "lesion", "status"] if lesions else ["subject", "label", *named, "status"]
    write_table(rows, sys.stdout, fmt, columns_of(rows, first))
