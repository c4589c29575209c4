"""Typed errors. Each carries a sentence meant for the user; callers never show tracebacks for them."""

from __future__ import annotations


class AppError(Exception):
    """An error the user can act on. `str(error)` is the one-sentence message shown to them."""


class ModelFileError(AppError):
    """A file that should be a GGUF model cannot be used (missing, unreadable, not GGUF, corrupt, truncated)."""


class HeaderIncompleteError(ModelFileError):
    """Only the start of a file was read (a ranged request) and its header goes on: read more of it."""


class UnknownModelError(AppError):
    """A model name that matches nothing in the library."""


class EngineError(AppError):
    """The engine process failed to start, died, or answered with an error."""

    def __init__(self, message: str, *, kind: str = "engine") -> None:
        super().__init__(message)
        self.kind = kind


class ConnectionLostError(EngineError):
    """The server went away mid-request: for the local engine, ask the supervisor why."""


class WontFitError(AppError):
    """Loading this model with these settings would exhaust memory: refused unless the user insists."""
