"""Where a cohort's cases come from: a BIDS dataset, a manifest (CSV) or a glob.

A case is file paths and a few strings (its id, its output folder, its own options from a
manifest row), so it travels to a Dask worker as is. BIDS outputs go under
`OUT/derivatives/segkit/sub-X[/ses-Y]/<datatype>/` with the input's own BIDS name plus the task's
registry suffix (`sub-01_ses-1_T2w_sc_seg.nii.gz`) and its JSON sidecar beside it.
"""

from __future__ import annotations

import glob as globbing
import re
from dataclasses import dataclass, field
from pathlib import Path

from segkit.errors import SegkitError

IMAGE_EXTENSIONS = (".nii.gz", ".nii")
DERIVATIVES = Path("derivatives") / "segkit"
MANIFEST_RESERVED = ("id", "input", "output")


class CohortError(SegkitError):
    """A cohort that cannot be run as given: no cases, a bad BIDS folder or manifest, a duplicate id."""


@dataclass(frozen=True)
class CohortCase:
    id: str
    inputs: tuple[str, ...]  # the case's channels, in the task's order
    output: str  # folder for its outputs
    options: dict = field(default_factory=dict, hash=False)  # its own task options (manifest columns)


def image_stem(path: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> str:
    name = Path(path).name
    for ext in extensions:
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def bids_cases(root: Path, out: Path, suffix: str | None, *, participants=(), sessions=(),
               datatype: str = "anat") -> list[CohortCase]:
    """One case per `sub-*/[ses-*/]<datatype>/*_<suffix>.nii[.gz]` (the BIDS app convention: labels
    without their `sub-`/`ses-` prefix)."""
    root = Path(root)
    check_bids_root(root)
    if not suffix:
        raise CohortError("--bids needs --bids-suffix, the BIDS suffix of the images to segment (e.g. T2w)")
    images = bids_files(root, lambda folder, subject: _bids_images(folder, subject, suffix), participants=participants,
                        sessions=sessions, datatype=datatype, what=f"'{suffix}' image")
    cases = [CohortCase(image_stem(image), (str(image),), str(Path(out) / DERIVATIVES / image.parent.relative_to(root)))
             for image in images]
    return _checked(cases, f"{root} (suffix '{suffix}', datatype '{datatype}')")


def check_bids_root(root: Path) -> None:
    if not (Path(root) / "dataset_description.json").is_file():
        raise CohortError(f"{root}: not a BIDS dataset (no dataset_description.json); give --bids the dataset's root")


def bids_files(tree: Path, find, *, participants=(), sessions=(), datatype: str = "anat",
               what: str = "image") -> list[Path]:
    """The one BIDS walk of `segment`, `eval` and `quantify`: `find(folder, subject)` over every
    `tree/sub-*/[ses-*/]<datatype>/` folder that --participant-label and --session keep (`tree` is a
    raw dataset or a derivatives folder). A participant asked for by name must have a file."""
    tree = Path(tree)
    wanted_subjects = {_label(p, "sub-") for p in participants or ()}
    wanted_sessions = {_label(s, "ses-") for s in sessions or ()}
    found: list[Path] = []
    for subject in sorted(p for p in tree.glob("sub-*") if p.is_dir()):
        if wanted_subjects and subject.name[4:] not in wanted_subjects:
            continue
        session_dirs = sorted(p for p in subject.glob("ses-*") if p.is_dir()) or [subject]
        for session in session_dirs:
            if wanted_sessions and (session is subject or session.name[4:] not in wanted_sessions):
                continue
            found += find(session / datatype, subject.name)
    missing = sorted(wanted_subjects - {path.relative_to(tree).parts[0][4:] for path in found})
    if missing:
        raise CohortError(f"{tree}: no {what} for participant(s) {', '.join(missing)} in {datatype}/")
    return found


def _label(text: str, prefix: str) -> str:
    return text[len(prefix):] if text.startswith(prefix) else text


def _bids_images(folder: Path, subject: str, suffix: str) -> list[Path]:
    pattern = re.compile(rf"^{re.escape(subject)}(_[a-zA-Z0-9]+-[a-zA-Z0-9]+)*_{re.escape(suffix)}\.nii(\.gz)?$")
    return sorted(p for p in folder.glob(f"{subject}_*") if p.is_file() and pattern.match(p.name))


def dataset_description(source: Path) -> dict:
    from segkit import __version__

    return {
        "Name": "segkit derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "segkit", "Version": __version__}],
        "SourceDatasets": [{"URL": Path(source).resolve().as_uri()}],
    }


def glob_cases(pattern: str, out: Path) -> list[CohortCase]:
    images = glob_files(pattern, folders=True)
    return _checked([CohortCase(image_stem(p), (str(p),), str(out)) for p in images], f"--glob {pattern!r}")


def glob_files(pattern: str, *, folders: bool = False, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """The one glob of `segment`, `eval` and `quantify`: sorted images (and folders: DICOM series)."""
    paths = sorted(Path(p) for p in globbing.glob(pattern, recursive=True))
    if folders:  # segment: an image file, or a folder (a DICOM series)
        return [p for p in paths if p.name.endswith(extensions) or p.is_dir()]
    return [p for p in paths if p.is_file() and p.name.lower().endswith(extensions)]


def manifest_cases(path: Path, out: Path | None, option_flags: dict) -> list[CohortCase]:
    """Columns: input (channels separated by ';'), optional id and output (a folder), and any of the
    task's options by their long name (`box`, `prompt_mask`, ...); file options are relative to the
    manifest like the inputs."""
    from segkit.cohort.manifest import read_manifest

    file_options = tuple(name for name, flag in option_flags.items() if flag.reads_file)
    rows = read_manifest(path, required=("input",), path_columns=("input", "output", *file_options), several=True,
                         error=CohortError, header="an 'input' column (optional: id, output, and the task's options)")
    cases = []
    for row in rows:
        unknown = sorted(set(row) - {"_line", *MANIFEST_RESERVED, *option_flags})
        if unknown:
            raise CohortError(f"{path}: line {row['_line']}: column(s) {', '.join(unknown)} are not options of this task")
        inputs = row["input"] if isinstance(row["input"], list) else [row["input"]]
        output = row.get("output") or out
        if output is None:
            raise CohortError(f"{path}: line {row['_line']}: give -o DIR or an 'output' column")
        options = {k: _option_value(option_flags[k], row[k]) for k in row if k in option_flags}
        cases.append(CohortCase(row.get("id") or image_stem(inputs[0]), tuple(map(str, inputs)), str(output), options))
    return _checked(cases, str(path))


def _option_value(flag, cell):
    if flag.kind is bool:
        text = str(cell).strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise CohortError(f"manifest column {flag.name}: {cell!r} is not true or false")
        return text in ("true", "1", "yes")
    if flag.multiple:
        cells = cell if isinstance(cell, list) else [part for part in str(cell).split(";") if part.strip()]
        return [str(c) for c in cells]
    return str(cell)


def _checked(cases: list[CohortCase], where: str) -> list[CohortCase]:
    if not cases:
        raise CohortError(f"{where}: no images found")
    seen: dict[str, CohortCase] = {}
    for case in cases:
        if case.id in seen:
            raise CohortError(f"case id '{case.id}' appears twice ({seen[case.id].inputs[0]} and {case.inputs[0]}); "
                              "give each case its own id")
        seen[case.id] = case
    for case in cases:
        for path in case.inputs:
            if not Path(path).exists():
                raise CohortError(f"case '{case.id}': input {path} does not exist")
    return cases
