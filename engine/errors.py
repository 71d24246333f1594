"""Errors a person can act on."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or request: what is wrong, and how to fix it.

    The CLI prints these without a traceback; the engine process sends them as
    an ``error`` event with the hint attached.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class Cancelled(Exception):
    """The job was asked to stop (SIGINT/SIGTERM or the GUI's Cancel)."""
