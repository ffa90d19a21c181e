"""Cohorts: a whole study in one command, on Dask (a local cluster, an existing scheduler or SLURM).

    inputs.py    BIDS folders, manifests (one reader for segment, eval and quantify) and globs -> cases
    derivatives.py  eval's and quantify's cohorts: segkit's masks in BIDS derivatives (or a glob), paired
                 with reference labels or led back to their raw images
    resume.py    the fingerprint a finished case's sidecar carries, and the check that skips it
    plugin.py    the per-worker model cache (a Dask worker plugin keyed by the model's sha256)
    work.py      one case on a worker: file paths in, outputs written, a small record back
    clusters.py  which Dask client: LocalCluster, --scheduler, --scheduler-file, --cluster slurm
    run.py       the driver: plan and check every case, install once, submit, retry, run table, QC report
"""
