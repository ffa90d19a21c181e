"""Which Dask cluster a cohort runs on: a LocalCluster (default), an existing scheduler (by address
or scheduler file), or SLURM through dask-jobqueue. Never a scheduler of segkit's own."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from segkit.errors import SegkitError


@dataclass(frozen=True)
class ClusterSettings:
    workers: int = 2
    threads_per_worker: int = 1
    memory_per_worker: str = "auto"
    scheduler: str | None = None
    scheduler_file: str | None = None
    cluster: str = "local"  # local | slurm
    partition: str | None = None
    walltime: str = "01:00:00"
    cores: int = 4
    memory: str = "16GB"
    gpus: int = 0  # GPUs per worker: 0 or 1 (one GPU per worker)
    jobs: int | None = None  # SLURM jobs (one worker each); default: --workers
    account: str | None = None
    gpu_workers: int = 0  # >0: inference on workers with a GPU resource, preparation on the CPU workers

    @property
    def split(self) -> bool:
        """Each case is two tasks: preparation (needs CPU=1) then inference (needs GPU=1)."""
        return self.gpu_workers > 0

    def check(self) -> None:
        if self.cluster not in ("local", "slurm"):
            raise SegkitError(f"--cluster {self.cluster!r}: choose local or slurm")
        if self.scheduler and self.scheduler_file:
            raise SegkitError("give either --scheduler or --scheduler-file, not both")
        if (self.scheduler or self.scheduler_file) and self.cluster != "local":
            raise SegkitError("--cluster starts its own scheduler: leave out --scheduler/--scheduler-file")
        if self.workers < 1 or self.threads_per_worker < 1 or self.cores < 1:
            raise SegkitError("--workers, --threads-per-worker and --cores must be at least 1")
        if self.gpus not in (0, 1):
            raise SegkitError(f"--gpus {self.gpus}: one GPU per worker (0 or 1); ask for more workers instead")
        if self.gpu_workers < 0:
            raise SegkitError(f"--gpu-workers {self.gpu_workers}: give 0 or more")
        if self.split and self.gpus:
            raise SegkitError("--gpu-workers gives inference workers of its own, one GPU each: leave out --gpus")
        if self.split and self.cluster == "slurm":
            raise SegkitError("--gpu-workers is for local workers or --scheduler: with --cluster slurm every "
                              "worker job gets --gpus")

    @property
    def resources(self) -> dict | None:
        """What each inference task asks of a worker: a GPU when workers have one."""
        return {"GPU": 1} if self.gpus or self.split else None

    @property
    def prepare_resources(self) -> dict | None:
        """What a preparation task asks of a worker when cases are split: a CPU worker's slot."""
        return {"CPU": 1} if self.split else None


# Dask's housekeeping, slowed down: on an idle LocalCluster of 2 workers the defaults (a 20 ms loop
# tick, the nannies' 100 ms memory poll, the workers' 10 ms sampling profiler) cost 3.4 CPU s per
# 20 s, 17% of a core; with these 0.6 (benchmarks/README.md, cohorts). A cohort needs none of them
# finer: the memory limit is still enforced, twice a second.
QUIET_HOUSEKEEPING = {
    "distributed.admin.tick.interval": "200ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
    "distributed.worker.profile.enabled": False,
}


def open_cluster(settings: ClusterSettings, allowed_failures: int = 0):
    """(client, cluster or None). A worker that dies mid-case fails its case at once
    (`allowed-failures`), so the driver's own retry count is the only one in force."""
    import dask
    from distributed import Client

    settings.check()
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures, **QUIET_HOUSEKEEPING}):
        if settings.scheduler:
            return Client(settings.scheduler), None
        if settings.scheduler_file:
            return Client(scheduler_file=settings.scheduler_file), None
        cluster = slurm_cluster(settings) if settings.cluster == "slurm" else local_cluster(settings)
        if settings.cluster == "slurm":
            cluster.scale(jobs=settings.jobs or settings.workers)
        return Client(cluster), cluster


def check_resources(client, settings: ClusterSettings) -> None:
    """On an existing scheduler, --gpu-workers needs workers declaring CPU and GPU resources: refuse
    at once rather than wait forever for a worker that will never come."""
    if not settings.split or not (settings.scheduler or settings.scheduler_file):
        return
    offered = set()
    for worker in client.scheduler_info(n_workers=-1)["workers"].values():
        offered |= set(worker.get("resources") or {})
    missing = [name for name in ("CPU", "GPU") if name not in offered]
    if missing:
        raise SegkitError(f"--gpu-workers: no worker of {settings.scheduler or settings.scheduler_file} declares "
                          f"{' or '.join(missing)}; start them with `dask worker ADDRESS --resources CPU=4` "
                          "(preparation) and `--resources GPU=1` (inference, one GPU each)")


def local_cluster(settings: ClusterSettings):
    """--workers workers (with --gpus 1, a GPU resource each); with --gpu-workers N, those are the
    CPU workers (resource CPU=threads) and N more declare GPU=1, each seeing one GPU."""
    from distributed import LocalCluster

    threads = str(settings.threads_per_worker)
    cluster = LocalCluster(
        n_workers=settings.workers, threads_per_worker=settings.threads_per_worker, processes=True,
        memory_limit=settings.memory_per_worker, host="127.0.0.1", dashboard_address=":0",
        resources={"CPU": settings.threads_per_worker} if settings.split else settings.resources,
        env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads},
    )
    if settings.split:
        add_gpu_workers(cluster, settings.gpu_workers)
    return cluster


def add_gpu_workers(cluster, count: int, timeout: float = 120) -> None:
    """`count` more workers of the cluster's own spec, each declaring GPU=1 and seeing one GPU
    (the i-th of CUDA_VISIBLE_DEVICES, or GPU i), started before anything is submitted."""
    import copy
    import os

    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    for i in range(count):
        (spec,) = cluster.new_worker_spec().values()
        spec = copy.deepcopy(spec)
        spec["options"]["resources"] = {"GPU": 1}
        device = visible[i % len(visible)] if visible else str(i)
        spec["options"]["env"] = {**spec["options"].get("env", {}), "CUDA_VISIBLE_DEVICES": device}
        cluster.worker_spec[f"gpu-{i}"] = spec
    cluster.scale(len(cluster.worker_spec))
    cluster.wait_for_workers(len(cluster.worker_spec), timeout=timeout)


def slurm_cluster(settings: ClusterSettings, scheduler_host: str | None = None):
    """A dask-jobqueue SLURMCluster: one worker per job, its cores, memory, walltime and GPU."""
    from dask_jobqueue import SLURMCluster

    directives = [f"--gres=gpu:{settings.gpus}"] if settings.gpus else []
    worker_args = ["--resources", f"GPU={settings.gpus}"] if settings.gpus else []
    return SLURMCluster(
        queue=settings.partition, account=settings.account, cores=settings.cores, processes=1,
        memory=settings.memory, walltime=settings.walltime, job_extra_directives=directives,
        worker_extra_args=worker_args, python=sys.executable, job_name="segkit",
        scheduler_options={"host": scheduler_host} if scheduler_host else {},
    )


def dashboard_link(client) -> str | None:
    try:
        return client.dashboard_link
    except Exception:  # noqa: BLE001 - no dashboard (bokeh absent): nothing to link
        return None
