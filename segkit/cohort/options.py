"""The cohort options `segkit segment` takes for every task (declared once, as the tasks' options
are, so the CLI's flags and the Python API's keywords are the same fields)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.tasks.options import TaskOptions, option

SOURCES = ("bids", "manifest", "glob")


@dataclass(frozen=True)
class CohortOptions(TaskOptions):
    bids: Path | None = option(None, "--bids", kind=Path,
                               help="A BIDS dataset: segment each sub-*/[ses-*/]<datatype>/*_<suffix> image; outputs "
                                    "under OUT/derivatives/segkit/ (OUT: -o, default the dataset itself).")
    participant_label: list = option(None, "--participant-label", multiple=True, split=True,
                                     help="With --bids: only these participants (label without 'sub-'); repeatable.")
    session: list = option(None, "--session", multiple=True, split=True,
                           help="With --bids: only these sessions (label without 'ses-'); repeatable.")
    bids_suffix: str | None = option(None, "--bids-suffix", kind=str, help="With --bids: the images' BIDS suffix, e.g. T2w.")
    datatype: str = option("anat", "--datatype", help="With --bids: the datatype folder (default anat).")
    manifest: Path | None = option(None, "--manifest", kind=Path, reads_file=True,
                                   help="CSV, one row per case: input (channels joined by ';'), optional id, output, "
                                        "and the task's options by long name (box, prompt_mask, ...).")
    glob: str | None = option(None, "--glob", kind=str, help="Segment every image matching this pattern (quote it; ** recurses).")
    workers: int = option(2, "--workers", kind=int, minimum=1, help="Local Dask workers (processes); default 2.")
    threads_per_worker: int = option(1, "--threads-per-worker", kind=int, minimum=1, help="Threads per local worker.")
    memory_per_worker: str = option("auto", "--memory-per-worker", help="Memory limit per local worker, e.g. 4GB.")
    scheduler: str | None = option(None, "--scheduler", kind=str, help="Run on an existing Dask scheduler: tcp://HOST:PORT.")
    scheduler_file: Path | None = option(None, "--scheduler-file", kind=Path, help="Run on the Dask scheduler this file describes.")
    cluster: str = option("local", "--cluster", choices=("local", "slurm"), help="local (default) or slurm (dask-jobqueue).")
    partition: str | None = option(None, "--partition", kind=str, help="SLURM partition.")
    account: str | None = option(None, "--account", kind=str, help="SLURM account.")
    walltime: str = option("01:00:00", "--walltime", help="SLURM walltime per worker job, HH:MM:SS.")
    cores: int = option(4, "--cores", kind=int, minimum=1, help="SLURM cores per worker job.")
    memory: str = option("16GB", "--memory", help="SLURM memory per worker job, e.g. 16GB.")
    gpus: int = option(0, "--gpus", kind=int, minimum=0, maximum=1, help="GPUs per worker (0 or 1).")
    gpu_workers: int = option(0, "--gpu-workers", kind=int, minimum=0,
                              help="Split each case: preparation on the --workers CPU workers, inference on N more "
                                   "local workers with one GPU each (Dask resources CPU/GPU); with --scheduler, N>0 "
                                   "means its workers declare them (dask worker --resources GPU=1 or CPU=4).")
    jobs: int | None = option(None, "--jobs", kind=int, minimum=1, help="SLURM worker jobs (default: --workers).")
    shard: str | None = option(None, "--shard", kind=str,
                               help="i/N: run only the i-th of N slices of the cases here, without Dask (job arrays).")
    retries: int = option(1, "--retries", kind=int, minimum=0, help="Retries of a case that crashed or lost its worker.")
    force: bool = option(False, "--force", help="Redo cases whose outputs are complete and current.")
    run_table: Path | None = option(None, "--run-table", kind=Path,
                                    help="The run table (TSV: id, status, seconds, worker, attempts, error); "
                                         "default OUT/segkit_runs.tsv.")

    def source(self) -> str | None:
        given = [name for name in SOURCES if getattr(self, name)]
        if len(given) > 1:
            from segkit.cohort.inputs import CohortError

            raise CohortError(f"give one cohort source: --{given[0]} or --{given[1]}, not both")
        return given[0] if given else None

    def cluster_settings(self):
        from segkit.cohort.clusters import ClusterSettings

        return ClusterSettings(
            workers=self.workers, threads_per_worker=self.threads_per_worker, memory_per_worker=self.memory_per_worker,
            scheduler=self.scheduler, scheduler_file=None if self.scheduler_file is None else str(self.scheduler_file),
            cluster=self.cluster, partition=self.partition, walltime=self.walltime, cores=self.cores,
            memory=self.memory, gpus=self.gpus, jobs=self.jobs, account=self.account, gpu_workers=self.gpu_workers,
        )
