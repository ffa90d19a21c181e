"""Third-party chatter kept off stderr unless --debug (issue 11: one line on stderr means one line).

nibabel logs header fixes, Python warnings come from many libraries, ITK prints its own warnings,
and nnunetv2 prints notes. segkit routes them to logging, shown at DEBUG level (`segkit --debug`).
"""

from __future__ import annotations

import contextlib
import io
import logging

log = logging.getLogger("segkit.libraries")


def configure(debug: bool) -> None:
    """Called once by the CLI: library loggers and warnings are shown only with --debug."""
    logging.captureWarnings(True)
    level = logging.DEBUG if debug else logging.ERROR
    for name in ("nibabel", "nibabel.global", "py.warnings", "onnxruntime", "nnunetv2"):
        logging.getLogger(name).setLevel(level)
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")


@contextlib.contextmanager
def printed_to_log(source: str):
    """Whatever a library prints to stdout inside the block goes to the debug log instead."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            if line.strip():
                log.debug("%s: %s", source, line)
