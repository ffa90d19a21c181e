"""One bar for the whole cohort on stderr (cases done, skipped and failed, elapsed, ETA); on a
terminal only. Off a terminal each failure is one line, so batch logs stay short.

The driver calls `start(total)` once the cases are found, then the bar with each case's record."""

from __future__ import annotations

import sys


class CohortBar:
    def __init__(self, label: str = "cohort"):
        self.label = label
        self.counts = {"done": 0, "skipped": 0, "failed": 0}
        self._progress = None

    def start(self, total: int) -> None:
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        from rich import progress as rp

        self._progress = rp.Progress(
            rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
            rp.TextColumn("{task.fields[note]}"), rp.TimeElapsedColumn(), rp.TextColumn("ETA"),
            rp.TimeRemainingColumn(), console=console,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=total, note=self._note())

    def _note(self) -> str:
        return ", ".join(f"{n} {k}" for k, n in self.counts.items() if n or k == "done")

    def __call__(self, record: dict) -> None:
        self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, note=self._note())
        elif record["status"] == "failed":
            sys.stderr.write(f"segkit: case {record['id']} failed: {record['error']}\n")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
