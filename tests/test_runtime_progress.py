"""The one progress bar: drawn on stderr only when it is a terminal, so logs and pipes stay clean."""

from __future__ import annotations

from segkit.registry.progress import RichProgress
from segkit.runtime.progress import TerminalBar


def test_nothing_is_drawn_off_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    with TerminalBar("count") as bar:
        assert bar.start("epoch", total=3) is False and not bar.shown
        bar.update(completed=2, note="loss 0.1")
    download = RichProgress()
    adapter = download.pooch_bar("model.bin")
    adapter.total = 1000
    adapter.update(1000)
    adapter.close()
    assert capsys.readouterr() == ("", "")


def test_a_terminal_gets_the_bar_on_stderr(capsys, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats the console as a terminal
    with TerminalBar("count") as bar:
        assert bar.start("epoch", total=3)
        bar.update(completed=2, note="loss 0.125")
    out, err = capsys.readouterr()
    assert out == "" and "2/3" in err and "loss 0.125" in err
