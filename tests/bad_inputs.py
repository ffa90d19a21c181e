"""The bad-input catalogue (issue 11): every case, the command it runs and what segkit must say.

tests/test_bad_inputs.py runs each case through the real CLI entry point in-process and checks:
exit 2, one line on stderr containing the expected words, no traceback, nothing written, no model
loaded. `python tests/bad_inputs.py` runs them all and rewrites docs/bad_inputs.md from what segkit
actually said (paths shown relative to the case folder).
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

SEGMENT = ["segment", "-task", "medsam", "--device", "cpu", "--backend", "torch"]
BOX = ["--box", "2,2,0,9,9,3"]


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]  # relative to the case folder
    expect: str  # words the one stderr line must hold
    make: Callable[[Path], None] = lambda d: None  # extra files for this case
    env: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------ files


def base_files(d: Path) -> None:
    """What every case starts from: a valid image, a mask on its grid, a label map."""
    rng = np.random.default_rng(0)
    save(d / "img.nii.gz", rng.random((16, 16, 4)).astype(np.float32))
    mask = np.zeros((16, 16, 4), np.uint8)
    mask[4:9, 4:9, 1:3] = 1
    save(d / "m.nii.gz", mask)


def save(path: Path, data: np.ndarray, affine=None) -> None:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))


def raw_nifti(path: Path, data: np.ndarray, patch: dict) -> None:
    """A NIfTI whose header fields are overwritten byte for byte (nibabel would fix them on save)."""
    image = nib.Nifti1Image(data, np.eye(4))
    image.header.set_sform(None, code=0)
    image.header.set_qform(np.eye(4), code=1)
    blob = bytearray(image.to_bytes())
    for offset, (fmt, values) in patch.items():
        blob[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, *values)
    path.write_bytes(gzip.compress(bytes(blob)) if path.name.endswith(".gz") else bytes(blob))


PIXDIM, DIM, SROW_X, SFORM_CODE = 80, 42, 280, 254
ONES = np.ones((4, 4, 4), np.uint8)


def singular_sform(path: Path, rows) -> None:
    patch = {SFORM_CODE: ("<h", (1,))}
    for i, row in enumerate(rows):
        patch[SROW_X + 16 * i] = ("<4f", row)
    raw_nifti(path, ONES, patch)


def write(name: str, content: bytes | str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return make


def png_image_and_prompt_mask_in_qc(d: Path) -> None:
    """A readable 2D image and prompt mask, the mask named like one of the image's QC files (inputs
    are read before outputs are planned, so an unreadable one would fail first, for another reason)."""
    import SimpleITK as sitk

    (d / "qc").mkdir(exist_ok=True)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:9, 4:9] = 1
    sitk.WriteImage(sitk.GetImageFromArray((mask * 200 + 20).astype(np.uint8)), str(d / "img2d.png"))
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(d / "qc" / "img2d_seg_qc.png"))


def steps(*makers) -> Callable[[Path], None]:
    return lambda d: [m(d) for m in makers]


def truncated(d: Path) -> None:
    (d / "cut.nii.gz").write_bytes((d / "img.nii.gz").read_bytes()[:200])


def nan_image(d: Path) -> None:
    data = np.ones((16, 16, 4), np.float32)
    data[3, 3, 1] = np.nan
    save(d / "nan.nii.gz", data)


def dicom_two_series(d: Path) -> None:
    """A folder with two DICOM series (T2 axial: 4 slices, T1 axial: 3 slices)."""
    import SimpleITK as sitk

    for uid, description, slices, value in (("1.2.3.4", "T2 axial", 4, 100), ("1.2.3.5", "T1 axial", 3, 200)):
        for k in range(slices):
            image = sitk.GetImageFromArray(np.full((1, 16, 16), value + k, np.int16))
            image.SetSpacing((1.0, 1.0, 2.0))
            tags = {"0020|000e": uid, "0020|000d": "1.2.3", "0008|103e": description, "0008|0060": "MR",
                    "0020|0013": str(k + 1), "0020|0032": f"0\\0\\{2.0 * k}", "0020|0037": "1\\0\\0\\0\\1\\0",
                    "0008|0018": f"{uid}.{k + 1}", "0008|0016": "1.2.840.10008.5.1.4.1.1.4"}
            for tag, text in tags.items():
                image.SetMetaData(tag, text)
            writer = sitk.ImageFileWriter()
            writer.KeepOriginalImageUIDOn()
            (d / "dcm").mkdir(exist_ok=True)
            writer.SetFileName(str(d / "dcm" / f"{uid}_{k}.dcm"))
            writer.Execute(image)


def symlink(d: Path) -> None:
    (d / "link.nii.gz").symlink_to(d / "m.nii.gz")


# ------------------------------------------------------------------------------ the cases

IMAGE_CASES = [
    Case("missing image", ["quantify", "-m", "nope.nii.gz"], "file not found"),
    Case("text file named .nii.gz", ["quantify", "-m", "t.nii.gz"], "cannot read NIfTI", write("t.nii.gz", "hello")),
    Case("empty (0-byte) file", ["quantify", "-m", "e.nii.gz"], "cannot read NIfTI", write("e.nii.gz", b"")),
    Case("truncated .nii.gz", ["quantify", "-m", "cut.nii.gz"], "cannot read", truncated),
    Case("header declares 400^3 voxels in a 1 kB .nii", ["quantify", "-m", "lie.nii"], "truncated or corrupt",
         lambda d: raw_nifti(d / "lie.nii", ONES, {DIM: ("<3h", (400, 400, 400))})),
    Case("header declares 400^3 voxels in a 1 kB .nii.gz", ["quantify", "-m", "lie.nii.gz"], "truncated or corrupt",
         lambda d: raw_nifti(d / "lie.nii.gz", ONES, {DIM: ("<3h", (400, 400, 400))})),
    Case("header declares 20000^3 voxels (8 TB)", ["eval", "--pred", "big.nii.gz", "--ref", "m.nii.gz"], "voxels",
         lambda d: raw_nifti(d / "big.nii.gz", ONES, {DIM: ("<3h", (20000, 20000, 20000))})),
    Case("zero voxel size (pixdim, no sform)", ["quantify", "-m", "z.nii"], "must be positive",
         lambda d: raw_nifti(d / "z.nii", ONES, {PIXDIM: ("<3f", (0, 1, 1))})),
    Case("negative voxel size (pixdim, no sform)", ["quantify", "-m", "n.nii"], "must be positive",
         lambda d: raw_nifti(d / "n.nii", ONES, {PIXDIM: ("<3f", (1, -2, 1))})),
    Case("sform with a zero column", ["quantify", "-m", "s.nii"], "voxel size is zero",
         lambda d: singular_sform(d / "s.nii", [(0, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0)])),
    Case("singular sform (two axes the same way)", ["eval", "--pred", "s.nii", "--ref", "s.nii"], "singular",
         lambda d: singular_sform(d / "s.nii", [(1, 1, 0, 0), (0, 0, 0, 0), (0, 0, 1, 0)])),
    Case("NaN in the sform", ["quantify", "-m", "s.nii"], "affine",
         lambda d: singular_sform(d / "s.nii", [(float("nan"), 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0)])),
    Case("--box-mm on a singular affine", SEGMENT + ["-i", "s.nii", "--box-mm", "0,0,0,2,2,2"], "voxel size is zero",
         lambda d: singular_sform(d / "s.nii", [(1, 0, 0, 0), (0, 0, 0, 0), (0, 0, 1, 0)])),
    Case("NaN voxels in the image", SEGMENT + ["-i", "nan.nii.gz"] + BOX, "NaN or infinite", nan_image),
    Case("label map with negative values", ["quantify", "-m", "neg.nii.gz"], "negative values",
         lambda d: save(d / "neg.nii.gz", -np.ones((4, 4, 4), np.int16))),
    Case("label map with fractions", ["eval", "--pred", "f.nii.gz", "--ref", "m.nii.gz"], "non-integer",
         lambda d: save(d / "f.nii.gz", np.full((16, 16, 4), 0.5, np.float32))),
    Case("5D image", ["quantify", "-m", "5d.nii.gz"], "5D",
         lambda d: save(d / "5d.nii.gz", np.ones((4, 4, 4, 2, 2), np.uint8))),
    Case("NRRD 'encoding: ascii' with binary bytes (crashed ITK)", ["quantify", "-m", "a.nrrd"], "non-numeric",
         write("a.nrrd", b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 5 5 5\nencoding: ascii\n\n" + bytes(400))),
    Case("not an image format segkit reads", ["quantify", "-m", "m.png"], "cannot read", write("m.png", b"\x89PNG\r\n")),
]

EVAL_CASES = [
    Case("pred and ref on different grids", ["eval", "--pred", "small.nii.gz", "--ref", "m.nii.gz"], "grid",
         lambda d: save(d / "small.nii.gz", np.zeros((8, 8, 4), np.uint8))),
    Case("--pred without --ref", ["eval", "--pred", "m.nii.gz"], "go together"),
    Case("two kinds of input", ["eval", "--pred", "m.nii.gz", "--ref", "m.nii.gz", "--manifest", "x.csv"], "exactly one input"),
    Case("--surface of unknown kind", ["eval", "--pred", "m.nii.gz", "--ref", "m.nii.gz", "--surface", "mesh"], "surfel, voxel or brats"),
    Case("negative --tolerance-mm", ["eval", "--pred", "m.nii.gz", "--ref", "m.nii.gz", "--tolerance-mm", "-1"], ">= 0"),
    Case("--format xml", ["eval", "--pred", "m.nii.gz", "--ref", "m.nii.gz", "--format", "xml"], "tsv, csv or json"),
    Case("--lesion-table without --lesions", ["eval", "--pred", "m.nii.gz", "--ref", "m.nii.gz", "--lesion-table", "t.tsv"],
         "needs --lesions"),
    Case("--lesion-table is the --ref", ["eval", "--pred", "img.nii.gz", "--ref", "m.nii.gz", "--lesions",
                                         "--lesion-table", "m.nii.gz"], "overwrite an input"),
    Case("--lesion-table is a symlink to the --ref", ["eval", "--pred", "m.nii.gz", "--ref", "m.nii.gz", "--lesions",
                                                      "--lesion-table", "link.nii.gz"], "overwrite an input", symlink),
    Case("--lesion-table is the manifest", ["eval", "--manifest", "p.csv", "--lesions", "--lesion-table", "p.csv"],
         "overwrite an input", write("p.csv", "pred,ref\nm.nii.gz,m.nii.gz\n")),
    Case("--lesion-table in a read-only tree", ["eval", "--pred", "m.nii.gz", "--ref", "m.nii.gz", "--lesions",
                                                "--lesion-table", "/proc/segkit/t.tsv"], "cannot write"),
    Case("manifest without a ref column", ["eval", "--manifest", "p.csv"], "ref", write("p.csv", "pred\nm.nii.gz\n")),
    Case("empty --pred-dir", ["eval", "--pred-dir", "a", "--ref-dir", "b"], "", steps(write("a/.keep", ""), write("b/.keep", ""))),
]

QUANTIFY_CASES = [
    Case("quantify --format xml", ["quantify", "-m", "m.nii.gz", "--format", "xml"], "tsv, csv or json"),
    Case("--hu-window LO above HI", ["quantify", "-m", "m.nii.gz", "--intensity", "-i", "img.nii.gz", "--hu-window", "5,1"],
         "must not exceed"),
    Case("intensity image on another grid", ["quantify", "-m", "m.nii.gz", "--intensity", "-i", "small.nii.gz"], "grid",
         lambda d: save(d / "small.nii.gz", np.zeros((8, 8, 4), np.float32))),
    Case("no mask given", ["quantify", "--volume"], "at least one mask"),
    Case("--hu-window without --intensity", ["quantify", "-m", "m.nii.gz", "--hu-window", "0,1"], "add --intensity"),
]

SEGMENT_CASES = [
    Case("medsam without a prompt", SEGMENT + ["-i", "img.nii.gz"], "needs a prompt"),
    Case("box outside the image", SEGMENT + ["-i", "img.nii.gz", "--box", "1,2,0,60,9,3"], "outside the image"),
    Case("box with 5 numbers", SEGMENT + ["-i", "img.nii.gz", "--box", "1,2,3,4,5"], "integers"),
    Case("box min after max", SEGMENT + ["-i", "img.nii.gz", "--box", "9,2,0,2,9,3"], "empty along axis 0"),
    Case("box with no area (a line)", SEGMENT + ["-i", "img.nii.gz", "--box", "2,2,1,2,9,1"], "no area"),
    Case("-o is the input image", SEGMENT + ["-i", "img.nii.gz"] + BOX + ["-o", "img.nii.gz"], "overwrite an input"),
    Case("-o is the --prompt-mask", SEGMENT + ["-i", "img.nii.gz", "--prompt-mask", "m.nii.gz", "-o", "m.nii.gz"],
         "overwrite an input"),
    Case("-o is a symlink to the --prompt-mask", SEGMENT + ["-i", "img.nii.gz", "--prompt-mask", "m.nii.gz", "-o",
                                                            "link.nii.gz"], "overwrite an input", symlink),
    Case("--qc folder holds a read file named like a QC image",
         SEGMENT + ["-i", "img2d.png", "--prompt-mask", "qc/img2d_seg_qc.png", "--qc", "qc", "-o", "out/"],
         "may overwrite", png_image_and_prompt_mask_in_qc),
    Case("-o with an extension segkit does not write", SEGMENT + ["-i", "img.nii.gz"] + BOX + ["-o", "out.nrrd"],
         "outputs are NIfTI"),
    Case("-o below a file", SEGMENT + ["-i", "img.nii.gz"] + BOX + ["-o", "img.nii.gz/out/"], "not a folder"),
    Case("-o in a read-only tree", SEGMENT + ["-i", "img.nii.gz"] + BOX + ["-o", "/proc/segkit_out/"], "cannot write"),
    Case("two inputs, -o one file", SEGMENT + ["-i", "img.nii.gz", "-i", "m.nii.gz"] + BOX + ["-o", "x.nii.gz"],
         "give -o a folder"),
    Case("the same input twice", SEGMENT + ["-i", "img.nii.gz", "-i", "img.nii.gz"] + BOX, "same path"),
    Case("unknown task", ["segment", "-task", "nosuch", "-i", "img.nii.gz"], "nosuch"),
    Case("an option of another task", SEGMENT + ["-i", "img.nii.gz", "--bval", "x.bval"] + BOX, "--bval"),
    Case("unknown --device", ["segment", "-task", "medsam", "-i", "img.nii.gz", "--device", "tpu"] + BOX, "tpu"),
    Case("--remove-small not a size", SEGMENT + ["-i", "img.nii.gz", "--remove-small", "lots"] + BOX, "lots"),
    Case("input image missing", SEGMENT + ["-i", "nope.nii.gz"] + BOX, "not found"),
    Case("DICOM folder with two series", SEGMENT + ["-i", "dcm", "--box", "2,2,0,9,9,2"], "choose one with --series",
         dicom_two_series),
    Case("--series not in the DICOM folder", SEGMENT + ["-i", "dcm", "--series", "9.9", "--box", "2,2,0,9,9,2"],
         "no DICOM series 9.9", dicom_two_series),
]

INSTALL_CASES = [
    Case("--sha256 not 64 hex digits", ["install-task", "mine", "--custom-url", "file:///x.zip", "--sha256", "abc"],
         "64 hexadecimal"),
    Case("--custom-url file that does not exist", ["install-task", "mine", "--custom-url", "file:///nonexistent/m.zip"],
         "could not be fetched"),
    Case("--custom-url of a random file for medsam", ["install-task", "medsam", "--custom-url", "FILE:r.pth"],
         "sha256 mismatch", write("r.pth", b"random bytes")),
    Case("--custom-url zip that is not an nnU-Net model", ["install-task", "mine", "--custom-url", "FILE:z.zip"],
         "not an nnU-Net v2 results zip", write("z.zip", bytes.fromhex("504b0506") + bytes(18))),
    Case("SEGKIT_TIMEOUT=abc", ["install-task", "mine", "--custom-url", "http://127.0.0.1:9/m.zip"], "SEGKIT_TIMEOUT",
         env={"SEGKIT_TIMEOUT": "abc"}),
    Case("model cache in a read-only tree", ["install-task", "medsam"], "cannot write the model cache",
         env={"SEGKIT_HOME": "/proc/segkit_home"}),
    Case("model cache below a file", ["install-task", "medsam"], "SEGKIT_HOME to a folder you can write",
         env={"SEGKIT_HOME": "/dev/null/segkit"}),
    Case("SEGKIT_RETRIES=many", ["install-task", "mine", "--custom-url", "http://127.0.0.1:9/m.zip"], "SEGKIT_RETRIES",
         env={"SEGKIT_RETRIES": "many"}),
]

CASES = IMAGE_CASES + EVAL_CASES + QUANTIFY_CASES + SEGMENT_CASES + INSTALL_CASES


def argv_in(case: Case, folder: Path) -> list[str]:
    """FILE:name stands for the file:// URL of a file in the case folder."""
    return [(folder / a[5:]).as_uri() if a.startswith("FILE:") else a for a in case.argv]


# ------------------------------------------------------------------------------ the table


def run_case(case: Case, folder: Path) -> tuple[int, str]:
    """(exit code, stderr) of the real CLI entry point, run in-process in `folder`."""
    import contextlib
    import io
    import os

    from segkit.cli.main import run

    stderr, stdout = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            run(argv_in(case, folder))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        os.chdir(previous)
    return code, stderr.getvalue()


def _table(rows: list[tuple[Case, int, str]]) -> str:
    lines = [
        "# Bad inputs and what segkit says",
        "",
        "Generated by `python tests/bad_inputs.py` from the cases `tests/test_bad_inputs.py` runs (issue 11).",
        "Every one exits with code 2 and one line on stderr, writes nothing and loads no model.",
        "",
        "| # | bad input | command | exit | what segkit says |",
        "|---|---|---|---|---|",
    ]
    for i, (case, code, said) in enumerate(rows, 1):
        command = "segkit " + " ".join(case.argv)
        env = " ".join(f"{k}={v}" for k, v in case.env.items())
        lines.append(f"| {i} | {case.name} | `{(env + ' ' + command).strip()}` | {code} | {said.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import os
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(CASES):
            folder = Path(tmp) / f"case{i}"
            folder.mkdir()
            os.environ.update({"SEGKIT_HOME": str(folder / ".home"), "SEGKIT_RETRIES": "0", **case.env})
            base_files(folder)
            case.make(folder)
            code, err = run_case(case, folder)
            for key in case.env:
                os.environ.pop(key)
            said = " ".join(err.strip().splitlines()[-1:]).replace(str(folder) + "/", "").replace(str(folder), ".")
            rows.append((case, code, said))
    out = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(_table(rows), encoding="utf-8")
    print(f"{out}: {len(rows)} cases")


if __name__ == "__main__":
    main()
