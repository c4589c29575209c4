"""Keeps one engine process for the chosen model and turns its failures into user sentences.

Shared by the CLI and the GUI (which calls it from a worker thread). A dead engine is replaced on the next
request; an engine for another model is stopped before the new one starts, so two models never compete for RAM.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from localai_app.core.engine_process import EngineOptions, EngineProcess
from localai_app.core.errors import ConnectionLostError, EngineError, ModelFileError
from localai_app.core.library import ModelInfo
from localai_app.core.replies import ReplyStream, SamplingOptions

if TYPE_CHECKING:
    from localai_app.core.client import EngineClient


class EngineManager:
    def __init__(self, options: EngineOptions, *, log_file: Path | None = None) -> None:
        self.options = options
        self._log_file = log_file
        self._process: EngineProcess | None = None
        self._client: EngineClient | None = None
        self._model: ModelInfo | None = None
        self._starting: EngineProcess | None = None  # reachable without the lock, so shutdown can end a slow load
        self._lock = threading.Lock()
        self._interrupted = threading.Event()  # the current reply's broken connection is Stop, not a fault

    @property
    def loaded_model(self) -> ModelInfo | None:
        return self._model if self._process is not None and self._process.is_alive() else None

    @property
    def engine_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def load(self, model: ModelInfo) -> None:
        """Make sure an engine is running `model`. Blocks for the load: call it off the GUI thread."""
        with self._lock:
            if self.loaded_model is not None and self.loaded_model.path == model.path:
                return
            self._stop_locked()
            if not model.path.exists():
                raise ModelFileError(f"{model.path} no longer exists; it was moved or deleted.")
            if model.problem:
                raise ModelFileError(model.problem)
            process = EngineProcess(model.path, self.options, log_file=self._log_file)
            self._starting = process
            try:
                endpoint = process.start()
            except EngineError:
                process.stop()
                raise
            finally:
                self._starting = None
            # Imported here, on the loading thread: httpx takes ~170 ms to import, which the GUI's first frame
            # would otherwise wait for.
            from localai_app.core.client import EngineClient

            self._process = process
            self._client = EngineClient(endpoint.base_url, endpoint.token)
            self._model = model

    def stream(self, model: ModelInfo, prompt: str | list[dict[str, str]], sampling: SamplingOptions) -> ReplyStream:
        """Stream a reply: a string prompt is text completion, a message list is chat. Closing stops it."""
        self.load(model)
        assert self._client is not None
        self._interrupted.clear()
        if isinstance(prompt, str):
            events = self._client.stream_completion(prompt, sampling)
        else:
            events = self._client.stream_chat(prompt, sampling)
        try:
            yield from events
        except ConnectionLostError:
            if self._interrupted.is_set():
                raise EngineError("Stopped.", kind="stopped") from None
            raise self._explain_loss() from None
        finally:
            events.close()

    def interrupt(self) -> None:
        """Thread-safe: end the reply being streamed now, even during its prompt pass (see EngineClient)."""
        self._interrupted.set()
        client = self._client
        if client is not None:
            client.interrupt()

    def _explain_loss(self) -> EngineError:
        """The connection broke: say why the engine died (and forget it, so the next request starts afresh)."""
        with self._lock:
            process = self._process
            if process is None:
                return EngineError("The engine stopped.", kind="stopped")
            if process.is_alive(settle=2.0):  # a killed engine's socket closes a moment before its exit shows
                return EngineError("The connection to the engine was lost.", kind="connection")
            fault = process.fault()
            self._stop_locked()
            return EngineError(fault.sentence, kind=fault.kind)

    def shutdown(self) -> None:
        starting = self._starting
        if starting is not None:
            starting.stop(grace=0.5)
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._process is not None:
            self._process.stop()
        self._process = self._client = self._model = None
