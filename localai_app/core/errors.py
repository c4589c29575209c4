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


class RouteUnavailableError(EngineError):
    """The server lacks an optional route (our /v1/tokenize, llama-server's /tokenize, ...): the feature that needs
    it is unavailable there, and nothing else is wrong."""


class TokenCountUnavailableError(RouteUnavailableError):
    """The server cannot count a prompt's tokens (a remote server without our /v1/tokenize): send it unfitted."""


class WontFitError(AppError):
    """Loading this model with these settings would exhaust memory: refused unless the user insists."""


class HubError(AppError):
    """A Hub request failed; `str()` says why in one sentence."""


class OfflineError(HubError):
    """The Hub cannot be reached at all."""


class AccessError(HubError):
    """Gated or private: the user must accept a licence or set a token."""


class NotOnHubError(HubError):
    """The repository, revision or file does not exist (any more)."""


class TransientError(HubError):
    """Worth retrying: a dropped connection, a server error, rate limiting."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConversationStoreError(AppError):
    """The conversation database cannot be opened, read or written; `str()` says why in one sentence."""


class NewerStoreError(ConversationStoreError):
    """The conversation database was written by a newer version of the app; it is left untouched."""


class UnknownConversationError(AppError):
    """A conversation or message id that is not (or no longer) in the store."""


class ImportFormatError(AppError):
    """A file offered for import is not a conversation this app can read; `str()` says what is wrong with it."""
