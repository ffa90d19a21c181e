"""A slice/case progress bar for `segkit segment`: rich on stderr, only on a terminal."""

from __future__ import annotations


class SliceProgress:
    """`with SliceProgress(label) as update:` gives update(done, total), or None off a terminal."""

    def __init__(self, label: str):
        from segkit.runtime.progress import TerminalBar

        self.label = label
        self.bar = TerminalBar("count")

    def __enter__(self):
        return self.update if self.bar.start(self.label) else None

    def update(self, done: int, total: int | None) -> None:
        self.bar.update(completed=done, total=total)

    def __exit__(self, *exc) -> None:
        self.bar.stop()
