"""Issue 16: cohorts on Dask. A LocalCluster of 2 worker processes on 127.0.0.1 runs a test task
(tests/cohort_task, registered from a test registry) whose model loads are logged per process, and
whose cases can crash, fail once, or kill their own worker mid-case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import write_registry

TESTS = Path(__file__).resolve().parent
SEGKIT = [sys.executable, "-c", "from segkit.cli.main import run; run()"]
TASK = {
    "description": "intensity level (cohort test task)", "citation": "segkit tests", "framework": "level",
    "package": "cohort_task", "weights_published": False, "weights_note": "none needed.",
    "input": {"modality": "any", "channels": [{"name": "image"}], "orientation": "RAS", "spacing": "native"},
    "labels": [{"name": "fg", "value": 1, "suffix": "_fg"}], "files": [],
}


def _image(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 0.1, (12, 10, 6)).astype(np.float32)
    data[3:8, 3:7, 2:5] += 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))
    return path


@pytest.fixture(scope="module")
def cohort_env(tmp_path_factory):
    """Environment every worker inherits (set before the cluster spawns them), and the cluster."""
    import dask
    from distributed import LocalCluster

    root = tmp_path_factory.mktemp("cohort")
    env = {
        "SEGKIT_REGISTRY": str(write_registry(root / "registry.yaml", {"level": TASK})),
        "SEGKIT_HOME": str(root / "home"), "COHORT_TASK_LOADS": str(root / "loads.txt"),
        "COHORT_TASK_MARKS": str(root / "marks"), "COHORT_TASK_SLEEP": "0.2",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    (root / "marks").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.syspath_prepend(str(TESTS))
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=":0")
        try:
            yield {"root": root, "env": {**os.environ, **env}, "address": cluster.scheduler_address, "cluster": cluster}
        finally:
            cluster.close()


def _run(env, folder: Path, pattern: str = "*.nii.gz", **options):
    from segkit.cohort.command import segment_cohort
    from segkit.cohort.options import CohortOptions

    cohort = {k: options.pop(k) for k in list(options) if k in ("force", "retries", "manifest", "shard")}
    if "manifest" not in cohort:
        cohort["glob"] = str(folder / "in" / pattern)
    if options.pop("via_scheduler_file", False):  # what `dask scheduler --scheduler-file F` writes
        (folder / "scheduler.json").write_text(json.dumps({"address": env["address"]}))
        cohort["scheduler_file"] = folder / "scheduler.json"
    else:
        cohort["scheduler"] = env["address"]
    loads = Path(env["root"]) / "loads.txt"
    loads.unlink(missing_ok=True)
    records, table = segment_cohort("level", CohortOptions(**cohort), output=folder / "out", **options)
    pids = loads.read_text().split() if loads.exists() else []
    return {r["id"]: r for r in records}, table, pids


def test_the_model_loads_exactly_once_per_worker(cohort_env, tmp_path):
    for i in range(8):
        _image(tmp_path / "in" / f"case{i}.nii.gz", i)
    records, table, pids = _run(cohort_env, tmp_path, level=0.5)
    assert {r["status"] for r in records.values()} == {"done"}
    workers = {r["worker"] for r in records.values()}
    assert len(workers) == 2, "both workers should have run cases"
    assert sorted(pids) == sorted(set(pids)) and len(pids) == 2, f"one load per worker, got {pids}"
    rows = table.read_text().splitlines()
    assert rows[0].split("\t") == ["id", "status", "seconds", "worker", "attempts", "error"] and len(rows) == 9
    mask = nib.load(str(tmp_path / "out" / "case3_fg.nii.gz"))
    assert mask.shape == (12, 10, 6) and int(np.asarray(mask.dataobj).sum()) == 5 * 4 * 3


def test_a_failing_case_is_retried_then_reported(cohort_env, tmp_path):
    for name in ("good0", "good1", "crash", "flaky"):
        _image(tmp_path / "in" / f"{name}.nii.gz")
    (tmp_path / "in" / "broken.nii.gz").write_bytes(b"not a nifti")
    records, table, _ = _run(cohort_env, tmp_path, level=0.5, retries=2, via_scheduler_file=True)
    assert records["good0"]["status"] == records["good1"]["status"] == "done"
    assert records["flaky"]["status"] == "done" and records["flaky"]["attempts"] == 2
    crash = records["crash"]
    assert crash["status"] == "failed" and crash["attempts"] == 3
    assert "RuntimeError: cohort_task crashes on crash.nii.gz" in crash["error"]
    # bad data is the user's to fix: reported at once, not retried
    assert records["broken"]["status"] == "failed" and records["broken"]["attempts"] == 1
    assert not (tmp_path / "out" / "crash_fg.nii.gz").exists()
    assert "crash\tfailed" in table.read_text()


def test_a_worker_killed_mid_case_ends_in_a_reported_failure(cohort_env, tmp_path):
    for name in ("a", "b", "kill", "c"):
        _image(tmp_path / "in" / f"{name}.nii.gz")
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=_run(cohort_env, tmp_path, level=0.5, retries=1)),
                              daemon=True)
    runner.start()
    runner.join(timeout=180)
    assert not runner.is_alive(), "the cohort hung after its worker was killed"
    records = outcome["result"][0]
    assert records["kill"]["status"] == "failed" and records["kill"]["attempts"] == 2
    assert "worker died" in records["kill"]["error"]
    assert all(records[name]["status"] == "done" for name in "abc")


def test_a_rerun_skips_finished_cases_and_redoes_changed_ones(cohort_env, tmp_path):
    for i in range(3):
        _image(tmp_path / "in" / f"c{i}.nii.gz", i)
    manifest = tmp_path / "cases.csv"
    manifest.write_text("id,input,level\nc0,in/c0.nii.gz,0.5\nc1,in/c1.nii.gz,0.5\nc2,in/c2.nii.gz,0.5\n")
    first, _, _ = _run(cohort_env, tmp_path, manifest=manifest)
    assert [r["status"] for r in first.values()] == ["done"] * 3
    again, _, pids = _run(cohort_env, tmp_path, manifest=manifest)
    assert [r["status"] for r in again.values()] == ["skipped"] * 3 and pids == []
    manifest.write_text("id,input,level\nc0,in/c0.nii.gz,0.5\nc1,in/c1.nii.gz,0.9\nc2,in/c2.nii.gz,0.5\n")
    changed, _, _ = _run(cohort_env, tmp_path, manifest=manifest)
    assert {k: r["status"] for k, r in changed.items()} == {"c0": "skipped", "c1": "done", "c2": "skipped"}
    assert json.loads((tmp_path / "out" / "c1_fg.json").read_text())["level"] == 0.9
    _image(tmp_path / "in" / "c2.nii.gz", 99)  # an edited input
    (tmp_path / "out" / "c0_fg.json").unlink()  # a half-finished case
    edited, _, _ = _run(cohort_env, tmp_path, manifest=manifest)
    assert {k: r["status"] for k, r in edited.items()} == {"c0": "done", "c1": "skipped", "c2": "done"}
    forced, _, _ = _run(cohort_env, tmp_path, manifest=manifest, force=True)
    assert [r["status"] for r in forced.values()] == ["done"] * 3


def test_shards_split_the_cases_without_dask(cohort_env, tmp_path):
    for i in range(5):
        _image(tmp_path / "in" / f"s{i}.nii.gz", i)
    ids = []
    for shard in ("0/2", "1/2"):
        records, table, _ = _run(cohort_env, tmp_path, level=0.5, shard=shard)
        assert table.name == f"segkit_runs.shard-{shard[0]}-of-2.tsv"
        ids += list(records)
    assert sorted(ids) == [f"s{i}" for i in range(5)] and len(set(ids)) == 5


def _bids(root: Path) -> Path:
    (root).mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    for sub, ses in (("01", "1"), ("01", "2"), ("02", None), ("03", None)):
        folder = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
        prefix = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
        _image(folder / f"{prefix}_T2w.nii.gz")
        _image(folder / f"{prefix}_T1w.nii.gz")
        (folder / f"{prefix}_T2w.json").write_text("{}")
    _image(root / "sub-02" / "anat" / "sub-02_acq-sag_T2w.nii.gz")
    _image(root / "derivatives" / "other" / "sub-01" / "anat" / "sub-01_T2w.nii.gz")
    return root


def test_a_bids_dataset_maps_to_derivatives_names(tmp_path):
    from segkit.cohort.inputs import CohortError, bids_cases

    root = _bids(tmp_path / "ds")
    cases = bids_cases(root, tmp_path / "out", "T2w", participants=["sub-01", "02"])
    derivatives = tmp_path / "out" / "derivatives" / "segkit"
    assert [(c.id, Path(c.output)) for c in cases] == [
        ("sub-01_ses-1_T2w", derivatives / "sub-01" / "ses-1" / "anat"),
        ("sub-01_ses-2_T2w", derivatives / "sub-01" / "ses-2" / "anat"),
        ("sub-02_T2w", derivatives / "sub-02" / "anat"),
        ("sub-02_acq-sag_T2w", derivatives / "sub-02" / "anat"),
    ]
    assert [c.id for c in bids_cases(root, tmp_path / "out", "T2w", sessions=["2"])] == ["sub-01_ses-2_T2w"]
    for call, message in ((lambda: bids_cases(root, tmp_path, None), "--bids-suffix"),
                          (lambda: bids_cases(root, tmp_path, "T2w", participants=["09"]), r"participant\(s\) 09"),
                          (lambda: bids_cases(root / "sub-01", tmp_path, "T2w"), "not a BIDS dataset")):
        with pytest.raises(CohortError, match=message):
            call()


def test_a_bids_study_through_the_cli_on_a_local_cluster(cohort_env, tmp_path):
    root = _bids(tmp_path / "ds")
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    args = ["segment", "-task", "level", "--bids", root, "--bids-suffix", "T2w", "--participant-label", "01,sub-02",
            "--workers", "2", "--level", "0.5", "-o", tmp_path / "study"]
    done = subprocess.run([*SEGKIT, *map(str, args)], env=cohort_env["env"], capture_output=True, encoding="utf-8", timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "study" / "derivatives" / "segkit"
    for stem in ("sub-01/ses-1/anat/sub-01_ses-1_T2w_fg", "sub-01/ses-2/anat/sub-01_ses-2_T2w_fg",
                 "sub-02/anat/sub-02_T2w_fg", "sub-02/anat/sub-02_acq-sag_T2w_fg"):
        assert (out / f"{stem}.nii.gz").is_file() and json.loads((out / f"{stem}.json").read_text())["level"] == 0.5
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "segkit"
    assert done.stdout.splitlines() == [str(out / "segkit_runs.tsv"), str(out / "segkit_masks.csv")]
    assert "4 cases: 4 done, 0 skipped, 0 failed" in done.stderr
    assert not (out / "sub-03").exists()
    # the finished masks, as `quantify --manifest` reads them
    quantified = subprocess.run([*SEGKIT, "quantify", "--manifest", str(out / "segkit_masks.csv"), "--intensity"],
                                env=cohort_env["env"], capture_output=True, encoding="utf-8", timeout=120)
    assert quantified.returncode == 0, quantified.stderr
    table = quantified.stdout.splitlines()
    assert len(table) == 5 and table[1].startswith("sub-01_ses-1_T2w\t1\t")
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before  # inputs never written
    assert not list((tmp_path / "study").glob("sub-*"))


def test_a_failed_case_makes_the_cli_exit_1_with_the_failures_listed(cohort_env, tmp_path):
    _image(tmp_path / "in" / "fine.nii.gz")
    (tmp_path / "in" / "broken.nii.gz").write_bytes(b"not a nifti")
    args = ["segment", "-task", "level", "--glob", tmp_path / "in" / "*.nii.gz", "--scheduler", cohort_env["address"],
            "-o", tmp_path / "out"]
    done = subprocess.run([*SEGKIT, *map(str, args)], env=cohort_env["env"], capture_output=True, encoding="utf-8", timeout=300)
    assert done.returncode == 1
    assert "1 done, 0 skipped, 1 failed" in done.stderr and "\n  broken: " in done.stderr
    assert (tmp_path / "out" / "fine_fg.nii.gz").is_file()


EXPECTED = {"duplicate ids": "appears twice", "missing input": "does not exist",
            "stray cohort flag": "applies to a cohort", "output over an input": "would overwrite an input"}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_a_bad_cohort_is_exit_2_before_anything_is_written(cohort_env, tmp_path, case):
    _image(tmp_path / "in" / "a.nii.gz")
    _image(tmp_path / "in" / "sub" / "a.nii.gz")
    manifest = tmp_path / "cases.csv"
    base = ["segment", "-task", "level", "--scheduler", cohort_env["address"], "-o", tmp_path / "out"]
    if case == "duplicate ids":
        args = [*base, "--glob", f"{tmp_path}/in/**/a.nii.gz"]
    elif case == "missing input":
        manifest.write_text("input\nin/a.nii.gz\nin/nope.nii.gz\n")
        args = [*base, "--manifest", manifest]
    elif case == "stray cohort flag":
        args = ["segment", "-task", "level", "-i", tmp_path / "in" / "a.nii.gz", "--workers", "3"]
    else:  # case x would write out/a_fg.nii.gz, which case y reads
        _image(tmp_path / "out" / "a_fg.nii.gz")
        manifest.write_text("id,input,output\nx,in/a.nii.gz,out\ny,out/a_fg.nii.gz,elsewhere\n")
        args = [*base[:-2], "--manifest", manifest]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    done = subprocess.run([*SEGKIT, *map(str, args)], env=cohort_env["env"], capture_output=True, encoding="utf-8", timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("segkit: error: ")
    assert EXPECTED[case] in done.stderr
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_slurm_job_scripts_from_dask_jobqueue():
    from segkit.cohort.clusters import ClusterSettings, slurm_cluster

    settings = ClusterSettings(cluster="slurm", partition="gpu", account="lab", walltime="02:30:00", cores=8,
                               memory="32GB", gpus=1, jobs=4)
    cluster = slurm_cluster(settings, scheduler_host="127.0.0.1")
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    for directive in ("#SBATCH -p gpu", "#SBATCH -A lab", "#SBATCH -t 02:30:00", "#SBATCH --cpus-per-task=8",
                      "#SBATCH --gres=gpu:1", "#SBATCH -J segkit"):
        assert directive in lines, f"{directive} missing from:\n{script}"
    assert any(line.startswith("#SBATCH --mem=") for line in lines)
    command = lines[-1]
    assert command.startswith(sys.executable) and "distributed.cli.dask_worker" in command
    assert "tcp://127.0.0.1:" in command and "--nthreads 8" in command and "--resources GPU=1" in command
    cpu = slurm_cluster(ClusterSettings(cluster="slurm", partition="cpu", cores=2), scheduler_host="127.0.0.1")
    try:
        assert "--gres" not in cpu.job_script() and "--resources" not in cpu.job_script()
    finally:
        cpu.close()


def test_one_bar_for_the_cohort_and_the_dashboard_link_on_a_terminal(cohort_env, tmp_path):
    import pty

    for i in range(3):
        _image(tmp_path / "in" / f"t{i}.nii.gz", i)
    (tmp_path / "in" / "crash.nii.gz").write_bytes(b"broken")
    leader, follower = pty.openpty()
    args = ["segment", "-task", "level", "--glob", tmp_path / "in" / "*.nii.gz", "--workers", "2", "-o", tmp_path / "out"]
    env = {**cohort_env["env"], "COLUMNS": "160", "TERM": "xterm"}
    chunks = []

    def drain():  # the terminal must be read while the bar draws, or a full buffer blocks the writer
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    done = subprocess.run([*SEGKIT, *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=follower, timeout=300)
    os.close(follower)
    reader.join(timeout=30)
    os.close(leader)
    screen = b"".join(chunks)
    text = screen.decode("utf-8", "replace")
    assert done.returncode == 1
    assert "segkit: Dask dashboard: http://127.0.0.1:" in text
    assert "cohort" in text and "4/4" in text and "3 done" in text and "1 failed" in text and "ETA" in text


def test_gpu_workers_run_inference_and_cpu_workers_preparation(cohort_env, tmp_path):
    """--gpu-workers: a LocalCluster whose workers declare CPU or GPU; Dask's own task stream shows
    every preparation on the CPU worker and every inference on the GPU worker (which alone loads the model)."""
    from distributed import Client

    from segkit.cohort.clusters import ClusterSettings, local_cluster
    from segkit.cohort.command import segment_cohort
    from segkit.cohort.options import CohortOptions

    for i in range(4):
        _image(tmp_path / "in" / f"case{i}.nii.gz", i)
    loads = Path(cohort_env["root"]) / "loads.txt"
    loads.unlink(missing_ok=True)
    cluster = local_cluster(ClusterSettings(workers=1, gpu_workers=1))
    try:
        with Client(cluster) as client:
            client.get_task_stream()  # starts the scheduler's task stream records
            workers = client.scheduler_info(n_workers=-1)["workers"]
            gpu = {a for a, w in workers.items() if w["resources"].get("GPU") == 1}
            cpu = {a for a, w in workers.items() if w["resources"].get("CPU")}
            assert len(gpu) == 1 and len(cpu) == 1 and not gpu & cpu
            cohort = CohortOptions(glob=str(tmp_path / "in" / "*.nii.gz"), scheduler=cluster.scheduler_address,
                                   gpu_workers=1)
            records, _ = segment_cohort("level", cohort, output=tmp_path / "out", level=0.5)
            stream = client.get_task_stream()
    finally:
        cluster.close()
    ran = {kind: [t["worker"] for t in stream if str(t["key"]).startswith(f"segkit-{kind}-")]
           for kind in ("prepare", "infer", "case")}
    assert len(ran["infer"]) == 4 and set(ran["infer"]) == gpu, ran
    assert len(ran["prepare"]) == 4 and set(ran["prepare"]) == cpu, ran
    assert ran["case"] == []
    assert [r["status"] for r in records] == ["done"] * 4 and {r["worker"] for r in records} == gpu
    assert len(loads.read_text().split()) == 1  # the model loaded on the GPU worker only
    mask = nib.load(str(tmp_path / "out" / "case2_fg.nii.gz"))
    assert int(np.asarray(mask.dataobj).sum()) == 5 * 4 * 3


def test_gpu_workers_are_refused_where_they_cannot_work(cohort_env, tmp_path):
    from segkit.cohort.clusters import ClusterSettings
    from segkit.cohort.command import segment_cohort
    from segkit.cohort.options import CohortOptions
    from segkit.errors import SegkitError

    for settings, message in ((ClusterSettings(gpu_workers=1, gpus=1), "leave out --gpus"),
                              (ClusterSettings(gpu_workers=1, cluster="slurm"), "--cluster slurm")):
        with pytest.raises(SegkitError, match=message):
            settings.check()
    _image(tmp_path / "in" / "case0.nii.gz")
    cohort = CohortOptions(glob=str(tmp_path / "in" / "*.nii.gz"), scheduler=cohort_env["address"], gpu_workers=1)
    with pytest.raises(SegkitError, match="declares CPU or GPU"):  # plain workers: refused, not waited for
        segment_cohort("level", cohort, output=tmp_path / "out", level=0.5)
    assert not (tmp_path / "out").exists()


def test_the_cluster_runs_with_quiet_housekeeping_and_a_worker_idles_cheaply():
    """The slower tick, memory poll and no profiler reach the worker processes; an idle worker then
    uses a small share of a core (measured here: 0.04-0.05 CPU s per 5 s, and 0.37-0.39 with the defaults)."""
    import dask
    import psutil

    from segkit.cohort.clusters import QUIET_HOUSEKEEPING, ClusterSettings, open_cluster

    client, cluster = open_cluster(ClusterSettings(workers=1))
    try:
        seen = client.run(lambda: {key: dask.config.get(key) for key in QUIET_HOUSEKEEPING})
        assert list(seen.values()) == [QUIET_HOUSEKEEPING]
        (pid,) = client.run(os.getpid).values()
        worker = psutil.Process(pid)
        before = sum(worker.cpu_times()[:2])
        threading.Event().wait(5.0)
        idle = sum(worker.cpu_times()[:2]) - before
        assert idle < 0.15, f"an idle worker used {idle:.2f} CPU s in 5 s"
    finally:
        client.close()
        cluster.close()
