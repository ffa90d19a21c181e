"""Issue 11 'Prove': fuzzed NIfTI/NRRD headers and bodies through segment (medsam, 2D), eval and quantify.

In-process through segkit.api, so each example costs milliseconds. The property: a call either
succeeds or raises a SegkitError (the CLI's clean exit 2); never another exception, and never a file
written beside the inputs. Most fuzzed files fail validation before any model runs; the few valid 2D
ones that reach segment run medsam, loaded once for the whole test.

CI runs SEGKIT_FUZZ_EXAMPLES (default 2000) derandomised examples; a longer run, e.g.
`SEGKIT_FUZZ_EXAMPLES=50000 SEGKIT_FUZZ_RANDOM=1 pytest tests/test_fuzz_inputs.py`, draws fresh ones.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from segkit.errors import SegkitError

EXAMPLES = int(os.environ.get("SEGKIT_FUZZ_EXAMPLES", "2000"))
ODD_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 2.5, 1e-30, 1e30, -1e30, float("nan"), float("inf"), float("-inf")]
DTYPES = ["uint8", "int16", "int32", "float32", "float64", "uint16", "int8", "complex64", "bool"]

# ------------------------------------------------------------------------------ strategies

shapes = st.lists(st.integers(0, 14), min_size=1, max_size=5)
zooms = st.lists(st.sampled_from(ODD_FLOATS) | st.floats(0.1, 5.0), min_size=3, max_size=3)
fills = st.sampled_from(["zeros", "ones", "labels", "random", "nan", "inf", "negative", "fractions", "huge"])
header_patches = st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), max_size=3)


@st.composite
def nifti_files(draw):
    return {
        "kind": "nifti",
        "shape": draw(shapes),
        "dtype": draw(st.sampled_from(DTYPES)),
        "fill": draw(fills),
        "seed": draw(st.integers(0, 2**16)),
        "zooms": draw(zooms),
        "oblique": draw(st.booleans()),
        "sform_code": draw(st.sampled_from([0, 1, 2, 5, -1])),
        "qform_code": draw(st.sampled_from([0, 1, 2])),
        "declared_dims": draw(st.none() | st.lists(st.integers(-2, 32767), min_size=1, max_size=7)),
        "patches": draw(header_patches),
        "truncate": draw(st.none() | st.floats(0.0, 1.0)),
        "gz": draw(st.booleans()),
    }


@st.composite
def nrrd_files(draw):
    return {
        "kind": "nrrd",
        "type": draw(st.sampled_from(["uint8", "short", "float", "double", "int", "bogus"])),
        "sizes": draw(st.lists(st.integers(0, 40000), min_size=1, max_size=4)),
        "spacing": draw(zooms),
        "body": draw(st.integers(0, 4000)),
        "encoding": draw(st.sampled_from(["raw", "gzip", "ascii", "nonsense"])),
    }


@st.composite
def clean_nifti_files(draw):
    """Valid files with fuzzed sizes, types and values: the ones that get through to compute."""
    return {
        "kind": "nifti", "shape": draw(st.lists(st.integers(1, 14), min_size=2, max_size=3)),
        "dtype": draw(st.sampled_from(["uint8", "int16", "float32"])),
        "fill": draw(st.sampled_from(["zeros", "ones", "labels", "random"])), "seed": draw(st.integers(0, 2**16)),
        "zooms": draw(st.lists(st.floats(0.2, 4.0), min_size=3, max_size=3)), "oblique": draw(st.booleans()),
        "sform_code": 1, "qform_code": draw(st.sampled_from([0, 1])), "declared_dims": None, "patches": [],
        "truncate": None, "gz": draw(st.booleans()),
    }


inputs = clean_nifti_files() | nifti_files() | nrrd_files()
commands = st.sampled_from(["quantify"] * 5 + ["eval"] * 5 + ["segment"])


# ------------------------------------------------------------------------------ building files


def _array(spec: dict) -> np.ndarray:
    rng = np.random.default_rng(spec["seed"])
    shape = tuple(spec["shape"])
    fill = spec["fill"]
    base = {"zeros": np.zeros(shape), "ones": np.ones(shape), "labels": rng.integers(0, 4, shape),
            "random": rng.random(shape) * 100, "negative": -rng.integers(0, 5, shape),
            "fractions": rng.random(shape), "huge": np.full(shape, 1e300)}.get(fill)
    if base is None:
        base = rng.random(shape)
        if base.size:
            base.flat[rng.integers(0, base.size)] = np.nan if fill == "nan" else np.inf
    with np.errstate(all="ignore"):
        return base.astype(spec["dtype"])


def _affine(spec: dict) -> np.ndarray:
    affine = np.diag([*spec["zooms"], 1.0]).astype(np.float64)
    if spec["oblique"]:
        affine[0, 1] = affine[1, 0] = 0.3
    return affine


def write_nifti(spec: dict, path: Path) -> None:
    try:
        image = nib.Nifti1Image(_array(spec), None)
        header = image.header
        header.set_sform(_affine(spec), code=max(spec["sform_code"], 0))
        blob = bytearray(image.to_bytes())
    except Exception:  # nibabel refuses some combinations itself: write zeros with that shape instead
        blob = bytearray(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)).to_bytes())
    struct.pack_into("<3f", blob, 80, *spec["zooms"])
    struct.pack_into("<hh", blob, 252, spec["qform_code"], spec["sform_code"])
    if spec["declared_dims"]:
        dims = spec["declared_dims"][:7]
        struct.pack_into("<h", blob, 40, len(dims))
        struct.pack_into(f"<{len(dims)}h", blob, 42, *dims)
    for offset, value in spec["patches"]:
        blob[offset] = value
    if spec["truncate"] is not None:
        blob = blob[: int(len(blob) * spec["truncate"])]
    path.write_bytes(gzip.compress(bytes(blob), mtime=0) if spec["gz"] else bytes(blob))


def write_nrrd(spec: dict, path: Path) -> None:
    sizes = spec["sizes"]
    header = (f"NRRD0004\ntype: {spec['type']}\ndimension: {len(sizes)}\nsizes: {' '.join(map(str, sizes))}\n"
              f"spacings: {' '.join(str(s) for s in spec['spacing'][: len(sizes)] + [1.0] * (len(sizes) - 3))}\n"
              f"encoding: {spec['encoding']}\n\n")
    path.write_bytes(header.encode() + bytes(spec["body"]))


def write_input(spec: dict, folder: Path, stem: str) -> Path:
    if spec["kind"] == "nrrd":
        path = folder / f"{stem}.nrrd"
        write_nrrd(spec, path)
    else:
        path = folder / (f"{stem}.nii.gz" if spec["gz"] else f"{stem}.nii")
        write_nifti(spec, path)
    return path


# ------------------------------------------------------------------------------ the property


def run_command(command: str, first: Path, second: Path, out: Path) -> None:
    from segkit import api
    from segkit.quantify.subjects import Measures, Subject

    if command == "quantify":
        api.quantify([Subject(mask=first, image=second)], Measures(volume=True, intensity=True))
    elif command == "eval":
        api.evaluate([(None, first, second)], lesions=True)
    else:
        api.segment("medsam", [first], box=["0,0,1,1"], output=out, device="cpu", backend="torch")


@pytest.fixture(scope="module")
def medsam_home(tmp_path_factory):
    """One cache for the whole fuzz run: medsam installs from its wheel once and loads once."""
    home = tmp_path_factory.mktemp("fuzz_home")
    previous = {k: os.environ.get(k) for k in ("SEGKIT_HOME", "SEGKIT_REGISTRY", "SEGKIT_MIRROR")}
    os.environ["SEGKIT_HOME"] = str(home)
    os.environ.pop("SEGKIT_REGISTRY", None)
    os.environ.pop("SEGKIT_MIRROR", None)
    yield home
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not os.environ.get("SEGKIT_FUZZ_RANDOM"),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(command=commands, first=inputs, second=inputs, same_second=st.booleans())
def test_fuzzed_inputs_end_cleanly(medsam_home, command, first, second, same_second):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first_path = write_input(first, folder, "a")
        second_path = first_path if same_second else write_input(second, folder, "b")
        before = sorted(p.name for p in folder.iterdir())
        try:
            run_command(command, first_path, second_path, folder / "out")
            event(f"{command}: ran")  # --hypothesis-show-statistics shows how many got through
        except SegkitError as exc:
            event(f"{command}: refused")
            assert str(exc).strip() and "\n" not in str(exc).strip()  # one line for the CLI
        after = sorted(p.name for p in folder.iterdir() if p.name != "out")
        assert after == before  # nothing beside the inputs (outputs only under out/)
