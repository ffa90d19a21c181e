"""The epoch progress shown by every `segkit train`: a rich bar on a terminal, one line per epoch otherwise."""

from __future__ import annotations

import sys
from typing import Callable


class EpochProgress:
    """Consumes training events ({"event": "stage"|"epoch", ...}) and renders them on stderr.

    `label` names the trainer in plain-text lines; `stats(event)` turns an epoch event into the
    text shown beside the bar (loss, validation Dice, ...).
    """

    def __init__(self, label: str, stats: Callable[[dict], str]) -> None:
        from segkit.runtime.progress import TerminalBar

        self.label = label
        self.stats = stats
        self.bar = TerminalBar("count")

    def __enter__(self) -> "EpochProgress":
        return self

    def on_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "stage" and event.get("stage") == "train":
            self._start(int(event.get("epochs") or 0), int(event.get("start_epoch") or 0))
        elif kind == "stage":
            cases = f" ({event['cases']} cases)" if "cases" in event else ""
            self._say(f"{self.label}: {event.get('stage')}{cases}")
        elif kind == "epoch":
            text = self.stats(event)
            if self.bar.shown:
                self.bar.update(completed=event["epoch"], note=text)
            else:
                self._say(f"epoch {event['epoch']}/{event['epochs']}  {text}")

    def _start(self, total: int, done: int) -> None:
        if not self.bar.start("epoch", total=total, completed=done):
            self._say(f"{self.label}: training epochs {done + 1}..{total}")

    @staticmethod
    def _say(text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def __exit__(self, *exc) -> None:
        self.bar.stop()


def number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
