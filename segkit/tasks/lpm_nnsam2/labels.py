"""lpm_nnsam2's label values, read from the registry (the one place they are written)."""

from __future__ import annotations

from segkit.tasks.facts import label_values

TASK = "lpm_nnsam2"


def lpm_labels() -> tuple[int, ...]:
    """The output label values (nnSAM2's two-class form: 1 right, 2 left LPM)."""
    return label_values(TASK)
