"""`--max-memory` (segment, eval, quantify, train): a real cap (the kernel refuses allocations past it), one line and exit 2
when a command needs more, no partial output, and no effect on a command that fits."""

from __future__ import annotations

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from segkit.runtime.memory import MemoryCapError, parse_size
from test_medsam_cli import segkit, volume  # noqa: F401 - the fixture is used by name


@pytest.mark.parametrize("text, size", [("2G", 2 << 30), ("1500M", 1500 << 20), ("4GiB", 4 << 30),
                                        ("512mb", 512 << 20), ("1.5G", 3 << 29), ("4096", 4096)])
def test_sizes_are_binary_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "2X", "-1G", "0", "G"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(MemoryCapError):
        parse_size(text)


def _one_line(done) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_an_input_larger_than_the_cap_stops_with_one_line_and_no_output(tmp_path):
    # 1600 x 1600 x 120 float32 = 1.2 GB to read, 5 MB on disk (zeros): past a 700M cap, under RAM
    big = tmp_path / "big.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((1600, 1600, 120), np.float32), np.eye(4)), big)
    out = tmp_path / "out"
    done = segkit("segment", "-task", "medsam", "-i", str(big), "--box", "10,10,50,50,0,5",
                  "--max-memory", "700M", "-o", f"{out}/", home=tmp_path / "home")
    assert done.returncode == 2
    assert "--max-memory 700M" in _one_line(done)
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture
def big_mask(tmp_path):
    """1600 x 1600 x 120 float32 = 1.2 GB to read, 5 MB on disk: past a 700M cap, under RAM."""
    path = tmp_path / "big_mask.nii.gz"
    data = np.zeros((1600, 1600, 120), np.float32)
    data[700:900, 700:900, 50:70] = 1
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


@pytest.mark.parametrize("command", ["eval", "quantify"])
def test_eval_and_quantify_stop_at_the_cap_with_one_line(command, big_mask, tmp_path):
    if command == "eval":
        args = ["eval", "--pred", str(big_mask), "--ref", str(big_mask), "--metrics", "dice"]
    else:
        args = ["quantify", "-m", str(big_mask), "--volume"]
    done = segkit(*args, "--max-memory", "700M", home=tmp_path / "home")
    assert done.returncode == 2 and done.stdout == ""
    assert "--max-memory 700M" in _one_line(done)
    fits = segkit(*args, "--max-memory", "8G", home=tmp_path / "home")
    assert fits.returncode == 0, fits.stderr
    free = segkit(*args, home=tmp_path / "home")
    assert fits.stdout == free.stdout and "1" in free.stdout.split("\n")[1].split("\t")[:2]


def test_train_refuses_a_cap_below_what_it_holds_before_writing(tmp_path):
    out = tmp_path / "model"
    done = segkit("train", "--data", str(tmp_path), "--max-memory", "1M", "-o", str(out), home=tmp_path / "home")
    assert done.returncode == 2 and "already holds" in _one_line(done)
    assert not out.exists()


def test_a_cap_below_what_segkit_holds_is_refused_before_reading(volume, tmp_path):  # noqa: F811
    done = segkit("segment", "-task", "medsam", "-i", str(volume), "--box", "10,8,0,30,30,3",
                  "--max-memory", "1M", "-o", f"{tmp_path / 'out'}/", home=tmp_path / "home")
    assert done.returncode == 2 and "already holds" in _one_line(done)


def test_a_command_that_fits_runs_as_without_the_cap(volume, tmp_path):  # noqa: F811
    masks = {}
    for name, extra in (("capped", ["--max-memory", "8G"]), ("free", [])):
        done = segkit("segment", "-task", "medsam", "-i", str(volume), "--box", "10,8,0,30,30,3", *extra,
                      "-o", f"{tmp_path / name}/", home=tmp_path / "home")
        assert done.returncode == 0, done.stderr
        masks[name] = np.asarray(nib.load(tmp_path / name / "sub-01_T1w_seg.nii.gz").dataobj)
    assert masks["capped"].any() and np.array_equal(masks["capped"], masks["free"])


def test_a_cohort_is_pointed_to_its_worker_limit(volume, tmp_path):  # noqa: F811
    done = segkit("segment", "-task", "medsam", "--glob", str(tmp_path / "*.nii.gz"), "--box", "10,8,0,30,30,3",
                  "--max-memory", "2G", "-o", f"{tmp_path / 'out'}/", home=tmp_path / "home")
    assert done.returncode == 2 and "--memory-per-worker" in _one_line(done)


_REUSE_PROBE = """
import resource, sys
import numpy as np
from segkit.runtime.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def faults_for_a_fresh_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.ones(6 << 20, dtype=np.uint8) for _ in range(4)]  # 6 MiB: between glibc's 128 KiB and 32 MiB
    del blocks
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_for_a_fresh_block()
print(kept, min(faults_for_a_fresh_block() for _ in range(5)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_eval_keeps_freed_memory_for_reuse_without_new_page_faults():
    """`segkit eval` keeps freed blocks for reuse: temporaries of a few MiB made again and again
    fault their pages in once, not on every use (by default, once more than twice the block size
    lies free, glibc trims it and the next use faults every page in again)."""
    # Without glibc's own variables: a Dask nanny started earlier in this process sets
    # MALLOC_TRIM_THRESHOLD_ in os.environ for good, and a user's setting wins over segkit's.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    runs = {}
    for mode in ("keep", "default"):
        done = subprocess.run([sys.executable, "-c", _REUSE_PROBE, mode], capture_output=True, text=True, check=True,
                              env=clean)
        kept, faults = done.stdout.split()
        runs[mode] = (kept, int(faults))
    assert runs["keep"][0] == "True"
    user_set = subprocess.run([sys.executable, "-c", _REUSE_PROBE, "keep"], capture_output=True, text=True, check=True,
                              env={**clean, "MALLOC_TRIM_THRESHOLD_": str(64 << 20)})
    assert user_set.stdout.split()[0] == "False"  # the user's own glibc setting wins
    # 24 MiB is 6144 pages of 4 KiB (12 where the kernel backs them with 2 MiB pages)
    assert runs["default"][1] >= 12 and runs["keep"][1] * 10 < runs["default"][1], runs
