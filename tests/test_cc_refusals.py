"""Issue 18 item 4: a bad cc_fodf input is named before any weights are looked for, whether no model
is installed, one is installed, or one is given with --model; the same order holds for a registry
nnU-Net task that is not installed. Each refusal is one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.phantoms.cc_dwi import make_cc_phantom, write_cc_subject

SEGKIT = str(Path(sys.executable).with_name("segkit"))
NO_WEIGHTS = "no pretrained weights"


def run(*args, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEGKIT_HOME": str(home)}
    env.pop("SEGKIT_REGISTRY", None)
    env.pop("SEGKIT_MIRROR", None)
    return subprocess.run([SEGKIT, *map(str, args)], capture_output=True, encoding="utf-8", env=env, timeout=600)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """The four bad inputs of issue 18, each a list of segment arguments, and what the error must say."""
    root = tmp_path_factory.mktemp("cc_refusals")
    files = write_cc_subject(make_cc_phantom(0, shape=(16, 18, 14), voxel_size=5.0), root, "sub-1")
    dwi = nib.load(str(files.dwi))
    t2w = root / "sub-1_T2w.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 18, 14)).astype(np.float32), dwi.affine), str(t2w))
    short_bval = root / "short.bval"  # 33 values for 35 volumes; the bvec is right
    short_bval.write_text(" ".join(["0"] * 3 + ["1000"] * 30) + "\n")
    b0 = root / "b0.nii.gz"  # a single b=0 volume, stored 4D as a scanner export may write it
    nib.save(nib.Nifti1Image(np.asarray(dwi.dataobj)[..., :1], dwi.affine), str(b0))
    (root / "b0.bval").write_text("0\n")
    (root / "b0.bvec").write_text("0\n0\n0\n")
    b0s = root / "b0s.nii.gz"  # three b=0 volumes and no diffusion weighting
    nib.save(nib.Nifti1Image(np.asarray(dwi.dataobj)[..., :3], dwi.affine), str(b0s))
    (root / "b0s.bval").write_text("0 0 0\n")
    (root / "b0s.bvec").write_text("0 0 0\n0 0 0\n0 0 0\n")
    return {
        "T2w image": (["-i", t2w], [f"{t2w.name}: is a 3D image", "needs a 4D peaks file", "--bval/--bvec"]),
        "bval count": (["-i", files.dwi, "--bval", short_bval, "--bvec", files.bvec],
                       [f"{short_bval}: has 33 b-values", "has 35 volumes", ".bval"]),
        "single b=0 volume": (["-i", b0, "--bval", root / "b0.bval", "--bvec", root / "b0.bvec"],
                              ["holds a single volume", "at least one b=0 volume and at least 6"]),
        "b=0 volumes only": (["-i", b0s, "--bval", root / "b0s.bval", "--bvec", root / "b0s.bvec"],
                             ["no diffusion-weighted volumes", "at least one b=0 volume and at least 6"]),
    }


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """A real cc_fodf model package (tiny CNN, random weights: these runs never reach inference)."""
    import torch

    from segkit.registry.store import sha256_of
    from segkit.tasks.cc_fodf.network import NetworkConfig, build_network

    folder = tmp_path_factory.mktemp("cc_package")
    config = NetworkConfig(architecture="unet", slice_size=16, width=0.0625, sam_grid=7)
    torch.manual_seed(0)
    torch.save(build_network(config).state_dict(), str(folder / "model.pt"))
    card = {"format": "segkit-cc_fodf-model", "format_version": 1, "task": "cc_fodf", "network": config.to_dict(),
            "weights": {"file": "model.pt", "sha256": sha256_of(folder / "model.pt"), "epoch": 0}}
    (folder / "model_card.json").write_text(json.dumps(card))
    with zipfile.ZipFile(folder.parent / "cc_package.zip", "w") as zf:
        zf.write(folder / "model.pt", "model.pt")
        zf.write(folder / "model_card.json", "model_card.json")
    return folder


def _assert_refused(result, out: Path, expected: list[str]) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert NO_WEIGHTS not in lines[0]
    for part in expected:
        assert part in lines[0], lines[0]
    assert not out.exists()


@pytest.mark.parametrize("name", ["T2w image", "bval count", "single b=0 volume", "b=0 volumes only"])
def test_bad_input_is_named_with_no_model_installed_one_installed_and_one_given(tmp_path, inputs, package, name):
    args, expected = inputs[name]
    home, out = tmp_path / "home", tmp_path / "out"
    _assert_refused(run("segment", "-task", "cc_fodf", *args, "-o", f"{out}/", home=home), out, expected)
    assert not (home / "tasks").exists()  # nothing was looked up or installed

    _assert_refused(run("segment", "-task", "cc_fodf", *args, "--model", package, "-o", f"{out}/", home=home),
                    out, expected)

    installed = run("install-task", "cc_fodf", "--custom-url", (package.parent / "cc_package.zip").as_uri(), home=home)
    assert installed.returncode == 0, installed.stderr
    _assert_refused(run("segment", "-task", "cc_fodf", *args, "-o", f"{out}/", home=home), out, expected)


def test_a_good_input_without_a_model_still_gets_the_weights_message(tmp_path, inputs):
    dwi_args = inputs["bval count"][0][:2]  # the DWI itself, with its own gradient files beside it
    dwi = Path(dwi_args[1])
    result = run("segment", "-task", "cc_fodf", *dwi_args, "--bval", dwi.with_name("sub-1_dwi.bval"),
                 "--bvec", dwi.with_name("sub-1_dwi.bvec"), "-o", f"{tmp_path / 'out'}/", home=tmp_path / "home")
    assert result.returncode == 2 and NO_WEIGHTS in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_registry_nnunet_task_names_a_4d_image_before_saying_it_is_not_installed(tmp_path, inputs):
    dwi = inputs["bval count"][0][1]
    result = run("segment", "-task", "seg_sc_lesion_t2w_sci", "-i", dwi, "-o", f"{tmp_path / 'out'}/",
                 home=tmp_path / "home")
    assert result.returncode == 2
    assert "is 4D" in result.stderr and "not installed" not in result.stderr
    t2w = inputs["T2w image"][0][1]  # a good input: now the missing installation is the problem
    result = run("segment", "-task", "seg_sc_lesion_t2w_sci", "-i", t2w, "-o", f"{tmp_path / 'out'}/",
                 home=tmp_path / "home")
    assert result.returncode == 2 and "not installed" in result.stderr
    assert not (tmp_path / "out").exists()
