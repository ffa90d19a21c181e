"""A rich progress bar on stderr, shown only when stderr is a terminal."""

from __future__ import annotations


class SliceProgress:
    """`with SliceProgress(label) as update:` gives update(done, total), or None off a terminal."""

    def __init__(self, label: str):
        self.label = label
        self._progress = None
        self._task = None

    def __enter__(self):
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        )
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=None)
        return self.update

    def update(self, done: int, total: int | None) -> None:
        self._progress.update(self._task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
