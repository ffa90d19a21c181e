"""A test task for cohort runs (registered from a test registry with `package: cohort_task`).

Its model is one intensity level. Loading it appends this process's id to $COHORT_TASK_LOADS, so a
test counts real loads per worker. A case whose file name holds `crash` raises, `kill` kills its
own worker process (SIGKILL, mid-case), and `flaky` raises on its first attempt only (a marker file
under $COHORT_TASK_MARKS remembers it). $COHORT_TASK_SLEEP seconds per case spread cases over workers.
"""
