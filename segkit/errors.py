"""Error types. A SegkitError is the user's to fix: the CLI prints its one line and exits 2.

Anything else that escapes is an internal error: exit 1 (traceback only with --debug).
"""


class SegkitError(Exception):
    """A user mistake or bad data: one clear line, exit code 2."""

    exit_code = 2


class RegistryError(SegkitError):
    """The registry file is malformed; the message names the entry and the field."""


class InstallError(SegkitError):
    """A model file could not be fetched or failed verification."""


class TaskNotInstalledError(SegkitError):
    """The task's files are not in the cache."""


class ImageError(SegkitError):
    """An input image is missing, unreadable, corrupt or of the wrong shape."""


class PromptError(SegkitError):
    """A prompt (box, mask) is empty, malformed or outside the image."""


def one_line(exc: BaseException) -> str:
    """An exception as one short line, for error messages that name a file."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
