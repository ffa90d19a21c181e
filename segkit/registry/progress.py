"""Download progress for the store: silent (NullProgress) or a bar on a terminal (RichProgress).

The store calls start/advance/stop for local copies, and hands `pooch_bar(name)` to pooch's
HTTPDownloader, which drives its own tqdm-like protocol.
"""

from __future__ import annotations


class NullProgress:
    def start(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def stop(self) -> None:
        pass

    def pooch_bar(self, name: str):
        return False


class RichProgress(NullProgress):
    """A bytes bar on stderr; silent when stderr is not a terminal (logs stay clean)."""

    def __init__(self) -> None:
        from segkit.runtime.progress import TerminalBar

        self._bar = TerminalBar("bytes")

    def start(self, name: str, total: int) -> None:
        self._bar.start(name, total)

    def advance(self, n: int) -> None:
        self._bar.update(advance=n)

    def restart(self) -> None:
        self._bar.reset()

    def stop(self) -> None:
        self._bar.stop()

    def pooch_bar(self, name: str):
        return _PoochAdapter(self, name)


class _PoochAdapter:
    """The object pooch's HTTPDownloader drives: it sets .total, then calls update/reset/close."""

    def __init__(self, owner: RichProgress, name: str):
        self.owner = owner
        self.name = name

    @property
    def total(self) -> int:
        return 0

    @total.setter
    def total(self, value: int) -> None:
        self.owner.start(self.name, value)

    def update(self, n: int) -> None:
        self.owner.advance(n)

    def reset(self) -> None:
        self.owner.restart()

    def close(self) -> None:
        self.owner.stop()
