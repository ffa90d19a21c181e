"""A tiny task that lives outside segkit (registered from a test registry with `package: tiny_task`).

It proves that a task is added without touching segkit's CLI or API: its options, runner and
trainer are found through the registry and its options module only. The "model" is one number:
an intensity level learned by `segkit train` as the midpoint of the two classes' mean intensities.
"""
