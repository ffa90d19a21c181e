"""The epoch loop of segkit's own trainers: the bookkeeping around a task's epoch, done once.

A task supplies `train_epoch(epoch) -> EpochResult` (its steps, its validation, its scheduler);
the loop restores --resume state, keeps the history and the best score, writes best.pt and last.pt
after every epoch, stops early when the score has not improved for `patience` epochs, and emits
the {"event": "stage"|"epoch", ...} events `segkit.training.progress.EpochProgress` renders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from segkit.training.checkpoints import Trainables, last_checkpoint, restore, save_best, save_last

EventFn = Callable[[dict], None]


@dataclass
class EpochResult:
    record: dict  # this epoch's history row: losses, validation numbers, lr (the loop adds "epoch")
    score: float | None = None  # higher is better; None: not validated this epoch, so no best.pt
    validation: dict | None = None  # kept as the best epoch's validation (model cards report it)


def fresh_state(**extra) -> dict:
    """`extra`: plain data a task wants back on --resume (cc_fodf keeps its batch size)."""
    return {"epoch": 0, "best_score": -1.0, "best_epoch": 0, "history": [], "best_validation": {}, **extra}


class EpochLoop:
    def __init__(self, output: Path | str, parts: Trainables, epochs: int, emit: EventFn | None = None, *,
                 resume: bool = False, patience: int | None = None, extra_state: dict | None = None):
        self.output = Path(output)
        self.parts = parts
        self.epochs = epochs
        self.emit = emit or (lambda event: None)
        self.patience = patience
        self.state = self._restored() if resume else fresh_state(**(extra_state or {}))

    @property
    def start_epoch(self) -> int:
        """Epochs already finished (by an earlier run when resuming)."""
        return int(self.state["epoch"])

    def run(self, train_epoch: Callable[[int], EpochResult]) -> dict:
        self.emit({"event": "stage", "stage": "train", "epochs": self.epochs, "start_epoch": self.start_epoch})
        for epoch in range(self.start_epoch + 1, self.epochs + 1):
            if self._patience_spent(epoch):
                self.emit({"event": "stage", "stage": f"early stop after epoch {epoch - 1}"})
                break
            result = train_epoch(epoch)
            self._finish(epoch, result)
        return self.state

    def _patience_spent(self, epoch: int) -> bool:
        best = self.state["best_epoch"]
        return self.patience is not None and best > 0 and epoch - best > self.patience

    def _finish(self, epoch: int, result: EpochResult) -> None:
        record = {"epoch": epoch, **result.record}
        self.state["history"].append(record)
        self.state["epoch"] = epoch
        event = {"event": "epoch", "epochs": self.epochs, **record}
        if result.score is not None:
            if result.score > self.state["best_score"]:
                self.state.update(best_score=result.score, best_epoch=epoch, best_validation=result.validation or {})
                save_best(self.output, self.parts, epoch)
            event["best_score"] = self.state["best_score"]
        save_last(self.output, self.parts, self.state)  # after best.pt: a resumed run never lacks its best
        self.emit(event)

    def _restored(self) -> dict:
        state = restore(last_checkpoint(self.output), self.parts)
        if "best_dice" in state:  # cc_fodf runs saved before this kit named the best score best_dice
            state.setdefault("best_score", state.pop("best_dice"))
        return {**fresh_state(), **state}
