"""Errors a user sees as one clear line, never as a traceback."""

from __future__ import annotations


class RobopolicyError(Exception):
    """Base for errors the command line reports as ``error: <message>`` with a non-zero exit."""


class DataError(RobopolicyError):
    """Bad or unreadable data: the message names the file and, where known, the key."""

    def __init__(self, path: object, message: str, *, key: str | None = None) -> None:
        self.path = str(path)
        self.key = key
        self.reason = message
        where = f"{self.path}" + (f" [{key}]" if key else "")
        super().__init__(f"{where}: {message}")
