"""The one exception type users see.

Every failure a user can cause (a bad file, a bad option, a missing weight file) raises
`FparError` with a message naming the file and what is wrong. The CLI prints it without a
traceback and exits non-zero; `--debug` shows the traceback.
"""

from __future__ import annotations


class FparError(Exception):
    """A user-facing error: the message alone must tell the user what to fix."""


class ConfigError(FparError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


class DataError(FparError):
    """A dataset root, video or label file is missing, malformed or inconsistent."""


class CheckpointError(FparError):
    """A checkpoint or weight file cannot be read, or does not fit the model."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line: whitespace runs (newlines included) become one space.

    Falls back to the exception's type name when the message is empty.
    """
    return " ".join(str(exc).split()) or type(exc).__name__
