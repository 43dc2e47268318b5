"""The one error type for mistakes a user can fix: ``helu-train`` prints its message without a traceback."""

from __future__ import annotations

import os

__all__ = ["DataError", "MissingDataError", "UserError", "shown_path"]


class UserError(ValueError):
    """Bad input from the user (a value, a file, a flag, a config): the message names the value and the fix.

    ``helu-train`` prints ``helu-train <command>: error: <message>`` and exits with status 2; set
    ``HELU_DEBUG=1`` to see the traceback instead.
    """


class DataError(UserError):
    """A data file that cannot be used as it is (malformed row, bad value, wrong encoding): the message names the
    file and line and how to fix it."""


class MissingDataError(DataError, FileNotFoundError):
    """A data set, file or run directory is not where the config points: the message says where it was sought and
    how to get it. Also a FileNotFoundError, so callers that catch that keep working."""


def shown_path(path: str) -> str:
    """``path`` for a message: relative to the working directory when it lies below it, else absolute."""
    relative = os.path.relpath(path)
    return os.path.abspath(path) if relative.startswith(os.pardir) else relative
