"""The cohort input `eval` and `quantify` share with `segment`: --bids DIR (narrowed by
--participant-label, --session, --datatype; masks found by --seg-suffix in --seg-derivative) or
--glob PATTERN, read by segkit.cohort.derivatives through segkit.api."""

from __future__ import annotations

from segkit.errors import SegkitError

BIDS_ONLY = ("participant_label", "session", "datatype", "seg_derivative", "ref_derivative",
             "fat_suffix", "water_suffix", "ff_suffix", "cord_suffix")
SUFFIXES = ("seg_suffix", "ref_suffix")

HELP = {
    "participant_label": "With --bids: only these participants (labels without 'sub-'); repeatable or comma-separated.",
    "session": "With --bids: only these sessions (labels without 'ses-'); repeatable or comma-separated.",
    "datatype": "With --bids: the datatype folder (default anat).",
    "seg_suffix": "With --bids (needed) or --glob: the suffix segkit added to each image's name, the task's "
                  "registry suffix (e.g. sc_seg for sub-01_T2w_sc_seg.nii.gz).",
    "seg_derivative": "With --bids: the masks' folder, a name under DIR/derivatives/ (default segkit) or a path "
                      "(e.g. OUT/derivatives/segkit after `segment --bids DIR -o OUT`).",
}


def cohort_values(values: dict) -> dict | None:
    """The keyword arguments of api.eval_cohort_pairs / api.quantify_cohort_subjects, or None when
    neither --bids nor --glob is given (then no cohort-only option may be either)."""
    bids, glob = values.get("bids"), values.get("glob")
    if bids is not None and glob:
        raise SegkitError("give either --bids or --glob, not both")
    if bids is None:
        stray = [name for name in BIDS_ONLY if values.get(name)]
        if stray:
            raise SegkitError(f"--{stray[0].replace('_', '-')} goes with --bids DIR")
        if not glob:
            stray = [name for name in SUFFIXES if values.get(name)]
            if stray:
                raise SegkitError(f"--{stray[0].replace('_', '-')} goes with --bids DIR or --glob PATTERN")
            return None
    return {name: value for name, value in values.items() if value is not None}
