"""The recorder's failures, each carrying the protocol's error code and a one-line message."""

from __future__ import annotations

from webrecord.api.models import ErrorCode


class RecorderError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidAction(Exception):
    """A control that does not fit the current status (answered with 409)."""
