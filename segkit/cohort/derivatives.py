"""Cohort input of `eval` and `quantify`: segkit's masks in a BIDS derivatives tree (or matched by a
glob), paired with reference labels (eval) or led back to the raw images they came from (quantify).

The naming convention is the one `segment --bids` writes: a mask is its source image's BIDS name
plus the task's registry suffix, `derivatives/segkit/sub-01/ses-1/anat/sub-01_ses-1_T2w_sc_seg.nii.gz`
for `sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz`. A reference label is the same source name plus its
own suffix in another derivatives folder, by default `derivatives/labels/` and `seg-manual` (the
spine-generic convention: `derivatives/labels/sub-01/anat/sub-01_T2w_seg-manual.nii.gz`). The
source name (the file name less its suffix) is the case id: it pairs a mask with its reference,
and names the raw image `quantify --intensity` reads. The walk over `sub-*/[ses-*/]<datatype>/`
and the glob are those of `segment` (segkit.cohort.inputs).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from segkit.cohort.inputs import IMAGE_EXTENSIONS, CohortError, bids_files, check_bids_root, glob_files, image_stem

DEFAULT_SEG_DERIVATIVE = "segkit"
DEFAULT_REF_DERIVATIVE = "labels"
DEFAULT_REF_SUFFIX = "seg-manual"
EVAL_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


@dataclass(frozen=True)
class BidsSelection:
    """A BIDS dataset and the part of it a command reads (--participant-label, --session, --datatype)."""

    root: Path
    participants: tuple = ()
    sessions: tuple = ()
    datatype: str = "anat"

    def derivative(self, name: str) -> Path:
        """A bare name is a folder of DIR/derivatives/; anything with a '/' is a path of its own."""
        folder = Path(name) if ("/" in str(name) or Path(name).is_absolute()) else self.root / "derivatives" / name
        if not folder.is_dir():
            raise CohortError(f"{folder}: no such derivatives folder in the BIDS dataset {self.root}")
        return folder

    def suffixed(self, tree: Path, suffix: str, what: str) -> dict[str, Path]:
        """source name -> file, for every `<source name>_<suffix>.nii[.gz]` of the selection in `tree`."""
        suffix = _bare(suffix)

        def find(folder: Path, subject: str) -> list[Path]:
            pattern = re.compile(rf"^{re.escape(subject)}_.+_{re.escape(suffix)}\.nii(\.gz)?$")
            return sorted(p for p in folder.glob(f"{subject}_*") if p.is_file() and pattern.match(p.name))

        files = bids_files(tree, find, participants=self.participants, sessions=self.sessions,
                           datatype=self.datatype, what=what)
        return {source_name(path, suffix): path for path in files}


def selection(root, participants=(), sessions=(), datatype: str = "anat") -> BidsSelection:
    """--participant-label and --session values, repeated or comma-separated, without their prefix."""
    def labels(values) -> tuple:
        return tuple(part.strip() for value in values or () for part in str(value).split(",") if part.strip())

    return BidsSelection(Path(root), labels(participants), labels(sessions), datatype or "anat")


def _bare(suffix: str | None) -> str:
    return (suffix or "").strip().lstrip("_")


def source_name(path: Path, suffix: str | None) -> str:
    """The file name less its extension and `_<suffix>` (the whole stem when there is no suffix)."""
    stem, suffix = image_stem(path, EVAL_EXTENSIONS), _bare(suffix)
    return stem[: -len(suffix) - 1] if suffix and stem.endswith("_" + suffix) else stem


def eval_pairs_bids(selection: BidsSelection, seg_suffix: str | None, ref_suffix: str | None = None,
                    seg_derivative: str | None = None, ref_derivative: str | None = None) -> list[tuple]:
    """(case, prediction, reference) for every reference label of the selection; each needs a prediction."""
    check_bids_root(selection.root)
    if not _bare(seg_suffix):
        raise CohortError("--bids needs --seg-suffix, the suffix segkit gave the masks (the task's, e.g. sc_seg)")
    ref_suffix = ref_suffix or DEFAULT_REF_SUFFIX
    refs = selection.suffixed(selection.derivative(ref_derivative or DEFAULT_REF_DERIVATIVE), ref_suffix,
                              f"'{_bare(ref_suffix)}' reference")
    preds = selection.suffixed(selection.derivative(seg_derivative or DEFAULT_SEG_DERIVATIVE), seg_suffix,
                               f"'{_bare(seg_suffix)}' mask")
    return _paired(refs, preds, f"{selection.root} (references '_{_bare(ref_suffix)}', masks '_{_bare(seg_suffix)}')")


def eval_pairs_glob(pattern: str, ref_dir: Path | None, seg_suffix: str | None = None,
                    ref_suffix: str | None = None) -> list[tuple]:
    """(case, prediction, reference) for every prediction the glob matches; each needs a reference in
    --ref-dir with the same source name (names less --seg-suffix and --ref-suffix when given)."""
    if ref_dir is None or not Path(ref_dir).is_dir():
        raise CohortError(f"eval --glob needs --ref-dir, the folder of the references (got {ref_dir})")
    preds = {source_name(p, seg_suffix): p for p in glob_files(pattern, extensions=EVAL_EXTENSIONS)
             if not _bare(seg_suffix) or image_stem(p, EVAL_EXTENSIONS).endswith("_" + _bare(seg_suffix))}
    if not preds:
        raise CohortError(f"--glob {pattern!r}: no images found")
    refs = {source_name(p, ref_suffix): p for p in sorted(Path(ref_dir).iterdir())
            if p.is_file() and p.name.lower().endswith(EVAL_EXTENSIONS)}
    missing = sorted(set(preds) - set(refs))
    if missing:
        raise CohortError(f"{ref_dir}: no reference for {len(missing)} prediction(s), e.g. {missing[0]!r}")
    return [(case, preds[case], refs[case]) for case in sorted(preds)]


def _paired(refs: dict, preds: dict, where: str) -> list[tuple]:
    if not refs:
        raise CohortError(f"{where}: no reference labels found")
    missing = sorted(set(refs) - set(preds))
    if missing:
        raise CohortError(f"{where}: no prediction for {len(missing)} reference(s), e.g. {missing[0]!r}")
    return [(case, preds[case], refs[case]) for case in sorted(refs)]


def masks_bids(selection: BidsSelection, seg_suffix: str | None, seg_derivative: str | None = None,
               images: bool = False, raw_suffixes: dict | None = None, mask_suffixes: dict | None = None) -> list[tuple]:
    """(name, mask, image or None, companions) for every segkit mask of the selection.

    images: the raw image it was made from (the mask's folder and source name in the raw tree).
    raw_suffixes {role: suffix}: raw images of the same acquisition, named like the source with its
    BIDS suffix replaced (fat: sub-01_acq-dixon_fat.nii.gz for sub-01_acq-dixon_T1w).
    mask_suffixes {role: suffix}: other segkit masks of the same source (cord: sub-01_T2w_sc_seg
    beside sub-01_T2w_lesion_seg). Every file named must exist."""
    check_bids_root(selection.root)
    if not _bare(seg_suffix):
        raise CohortError("--bids needs --seg-suffix, the suffix segkit gave the masks (the task's, e.g. sc_seg)")
    tree = selection.derivative(seg_derivative or DEFAULT_SEG_DERIVATIVE)
    masks = selection.suffixed(tree, seg_suffix, f"'{_bare(seg_suffix)}' mask")
    if not masks:
        raise CohortError(f"{tree}: no '_{_bare(seg_suffix)}' masks found")
    rows = []
    for name, mask in sorted(masks.items()):
        raw_folder = selection.root / mask.parent.relative_to(tree)
        image = _existing_image(raw_folder, name, mask) if images else None
        companions = {role: _existing_image(raw_folder, _with_bids_suffix(name, suffix), mask)
                      for role, suffix in (raw_suffixes or {}).items()}
        companions.update({role: _existing_image(mask.parent, f"{name}_{_bare(suffix)}", mask)
                           for role, suffix in (mask_suffixes or {}).items()})
        rows.append((name, mask, image, companions))
    return rows


def _existing_image(folder: Path, name: str, mask: Path) -> Path:
    found = next((folder / f"{name}{ext}" for ext in IMAGE_EXTENSIONS if (folder / f"{name}{ext}").is_file()), None)
    if found is None:
        raise CohortError(f"{mask}: its image {folder / name}.nii.gz is not in the BIDS dataset")
    return found


def _with_bids_suffix(name: str, suffix: str) -> str:
    """A BIDS name with its suffix (the part after the last '_') replaced."""
    entities, _, _ = name.rpartition("_")
    return f"{entities}_{_bare(suffix)}" if entities else _bare(suffix)


def masks_glob(pattern: str, images: bool = False) -> list[tuple]:
    """(None, mask, image or None, {}) for every mask the glob matches (masks_bids' rows, without
    companions); with `images`, the image its segkit sidecar names as its first input."""
    masks = glob_files(pattern)
    if not masks:
        raise CohortError(f"--glob {pattern!r}: no images found")
    return [(None, mask, _sidecar_image(mask) if images else None, {}) for mask in masks]


def _sidecar_image(mask: Path) -> Path:
    sidecar = mask.with_name(image_stem(mask) + ".json")
    try:
        image = Path(json.loads(sidecar.read_text(encoding="utf-8"))["inputs"][0])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise CohortError(f"{mask}: no segkit sidecar naming its image ({sidecar.name}); "
                          "give the images with --manifest (mask,image columns)") from None
    if not image.is_file():
        raise CohortError(f"{mask}: its image {image} (from {sidecar.name}) does not exist")
    return image
