"""Run a blocking function on Qt's thread pool and get its result back on the GUI thread by signal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from localai_app.core.errors import AppError

# The work handed here waits (on the engine, the Hub, the disk) far more than it computes, so the pool is not sized by
# CPU cores as Qt's default is: on a 2-core laptop a slow Hub search and a model loading would hold every thread, and
# the prompt inspector or the library would wait behind them.
WAITING_THREADS = 8


class _Relay(QObject):
    succeeded = Signal(object)
    failed = Signal(str)


class _Task(QRunnable):
    def __init__(self, work: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self._work = work
        self._relay = relay

    def run(self) -> None:
        try:
            result = self._work()
        except (AppError, OSError) as error:
            self._relay.failed.emit(str(error))
        else:
            self._relay.succeeded.emit(result)


def run_in_background(
    parent: QObject, work: Callable[[], Any], on_success: Callable[[Any], None], on_failure: Callable[[str], None]
) -> None:
    """`on_success`/`on_failure` run on the GUI thread (queued signals); `parent` keeps the relay alive."""
    relay = _Relay(parent)
    relay.succeeded.connect(on_success)
    relay.failed.connect(on_failure)
    relay.succeeded.connect(relay.deleteLater)
    relay.failed.connect(relay.deleteLater)
    pool = QThreadPool.globalInstance()
    pool.setMaxThreadCount(max(pool.maxThreadCount(), WAITING_THREADS))
    pool.start(_Task(work, relay))


class LatestOnly:
    """Background requests of which only the latest one's answer is wanted.

    The user moves on while a request runs (edits the conversation, steps again, reopens a view), so an answer to an
    older request, success or failure, is dropped instead of overwriting what the newer one shows.
    """

    def __init__(self, parent: QObject) -> None:
        self._parent = parent
        self._latest = 0

    def run(
        self, work: Callable[[], Any], on_success: Callable[[Any], None], on_failure: Callable[[str], None]
    ) -> None:
        self._latest += 1
        asked = self._latest

        def if_still_latest(handler: Callable[[Any], None]) -> Callable[[Any], None]:
            def answer(value: Any) -> None:
                if asked == self._latest:
                    handler(value)

            return answer

        run_in_background(self._parent, work, if_still_latest(on_success), if_still_latest(on_failure))

    def drop(self) -> None:
        """Whatever is still running is no longer wanted (the view now shows something else)."""
        self._latest += 1
