"""lpm_nnsam2's label values, read from the registry (the one place they are written)."""

from __future__ import annotations

from segkit.tasks.facts import label_values

TASK = "lpm_nnsam2"


def lpm_labels() -> tuple[int, ...]:
    """The output label values (nnSAM2's two-class form: 1 right, 2 left LPM)."""
    return label_values(TASK)


def lpm_label_names() -> dict[int, str]:
    """Output label value -> its registry name (lpm_right, lpm_left): what tables and messages say."""
    from segkit.tasks.facts import task_spec

    return {label.values[0]: label.name for label in task_spec(TASK).labels}
