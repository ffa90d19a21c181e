"""One progress bar for every long step (downloads, slices, epochs): rich on stderr, only on a terminal.

Off a terminal nothing is drawn, so logs and pipes stay clean; callers that want a plain-text line
per step there (training) check `shown` after `start`.
"""

from __future__ import annotations


class TerminalBar:
    """A single rich bar on stderr: `start`, then `update`, then `stop` (or use it as a context).

    `kind` picks the columns after the description and the bar: "bytes" shows size and speed,
    "count" shows done/total, an optional `note` text (e.g. loss values) and the elapsed time.
    """

    def __init__(self, kind: str = "count") -> None:
        if kind not in ("bytes", "count"):
            raise ValueError(f"progress kind must be 'bytes' or 'count', not {kind!r}")
        self.kind = kind
        self._progress = None
        self._task = None

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def start(self, description: str, total: int | None = None, completed: int = 0) -> bool:
        """Show the bar when stderr is a terminal; returns whether it is shown."""
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return False
        from rich.progress import Progress

        self._progress = Progress(*self._columns(), console=console)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total or None, completed=completed, note="")
        return True

    def update(self, *, completed: int | None = None, total: int | None = None, advance: int | None = None,
               note: str | None = None) -> None:
        if self._progress is None:
            return
        changes = {"completed": completed, "total": total, "advance": advance, "note": note}
        self._progress.update(self._task, **{k: v for k, v in changes.items() if v is not None})

    def reset(self) -> None:
        if self._progress is not None:
            self._progress.reset(self._task)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> "TerminalBar":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _columns(self) -> list:
        from rich import progress as rp

        if self.kind == "bytes":
            extra = [rp.DownloadColumn(), rp.TransferSpeedColumn()]
        else:
            extra = [rp.MofNCompleteColumn(), rp.TextColumn("{task.fields[note]}"), rp.TimeElapsedColumn()]
        return [rp.TextColumn("{task.description}"), rp.BarColumn(), *extra]
