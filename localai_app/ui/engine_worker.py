"""The engine seen from the GUI: an EngineManager (or, for a remote model, its server: core/remote.py) driven on
its own QThread, reporting by queued signals.

Loading a model and reading the token stream block, so they never run on the GUI thread. Stop is a flag the
stream loop checks at every token; closing the stream makes the engine stop generating.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from localai_app.core.context import ContextFullError, fit_prompt
from localai_app.core.conversations import ChatSettings
from localai_app.core.engine_manager import EngineManager
from localai_app.core.errors import AppError, TokenCountUnavailableError, WontFitError
from localai_app.core.library import ModelInfo
from localai_app.core.remote import Backends, RemoteBackend
from localai_app.core.replies import Delta, SamplingOptions
from localai_app.core.serving import ServeOptions

if TYPE_CHECKING:
    from localai_app.core.client import EngineClient


class EngineWorker(QObject):
    loading = Signal(str)  # model name
    loaded = Signal(str)
    planned = Signal(object)  # the LoadPlan a load used (None for a model that cannot be estimated)
    load_failed = Signal(str)  # one sentence
    refused = Signal(str)  # the model would not fit: the numbers and ways out; the user may insist
    delta = Signal(str)
    # The TokenProbability of each token of the delta just sent; only when the sampling asked for them (token view).
    token_probabilities = Signal(object)
    finished = Signal(dict)  # ReplyStats.as_dict(), plus "stopped"
    failed = Signal(str)
    context_measured = Signal(int, int)  # tokens of the prompt sent, the context length
    context_trimmed = Signal(int)  # how many of the oldest messages were left out of the prompt to fit
    context_full = Signal(str)  # nothing was sent: why, and what the user can do
    # After a load: the local engine's ModelInfo (None: none runs) and its public API's base URL (None: not served).
    # A remote model's load leaves that engine running as it was.
    serving = Signal(object, object)

    def __init__(self, manager: EngineManager, remote: RemoteBackend) -> None:
        super().__init__()
        self._manager = manager
        self._backends = Backends(manager, remote)  # where each model's requests go
        self._default_context = manager.overrides.context
        self._stop = threading.Event()

    def request_stop(self) -> None:
        """Thread-safe: called directly from the GUI thread while `generate` runs here."""
        self._stop.set()
        self._backends.interrupt()  # a reply still in its prompt pass has no token yet to notice the flag at

    def client_for(self, model: ModelInfo) -> EngineClient:
        """Thread-safe, and blocks (it may load `model`): for a background task of the glass box's views, whose
        requests need not wait behind a reply streaming on this worker's thread."""
        return self._backends.client_for(model)

    @Slot(object, bool)
    def load(self, model: ModelInfo, insist: bool) -> None:
        self.loading.emit(model.name)
        try:
            self._backends.load(model, insist=insist)
        except WontFitError as error:
            self.refused.emit(str(error))
        except AppError as error:
            self.load_failed.emit(str(error))
        else:
            self.planned.emit(self._backends.last_plan)
            self.loaded.emit(model.name)
            self.serving.emit(self._manager.loaded_model, self._manager.serving_url)

    @Slot(object, object)
    def serve(self, model: ModelInfo | None, options: ServeOptions | None) -> None:
        """Serve the public API on `options` (None: stop) from now on, restarting the local engine with `model`
        (None: with the model it runs, if any).

        Set here, on the worker's thread, so that a load already under way keeps the options it started with."""
        self._manager.serve = options
        model = model or self._manager.loaded_model
        if model is not None:
            self.load(model, False)

    @Slot(object, object, object, object)
    def generate(
        self, model: ModelInfo, prompt: str | list[dict[str, str]], sampling: SamplingOptions, chat: ChatSettings
    ) -> None:
        """Streams a reply to `prompt`, loading `model` first if needed, with the conversation's context length
        (None: the app's setting, else what fits) and its policy for a conversation that outgrows it."""
        self._stop.clear()
        self._manager.overrides = replace(self._manager.overrides, context=chat.context_length or self._default_context)
        loaded = self._backends.loaded_model
        if loaded is None or loaded.name != model.name:
            self.loading.emit(model.name)
        try:
            self._backends.load(model)
        except WontFitError as error:
            self.refused.emit(str(error))  # the window ends the reply it began
            return
        except AppError as error:
            self.failed.emit(str(error))
            return
        if loaded is None or loaded.name != model.name:
            self.planned.emit(self._backends.last_plan)
        try:
            prompt = self._fit(model, prompt, sampling, chat.context_policy)
        except ContextFullError as error:
            self.context_full.emit(str(error))
            return
        except AppError as error:
            self.failed.emit(str(error))
            return
        try:
            events = self._backends.stream(model, prompt, sampling)
            for event in events:
                if isinstance(event, Delta):
                    self.delta.emit(event.text)
                    if event.probabilities:
                        self.token_probabilities.emit(event.probabilities)
                    if self._stop.is_set():
                        events.close()
                        self.finished.emit({"stopped": True})
                        return
                else:
                    self.finished.emit({**event.as_dict(), "stopped": False})
        except AppError as error:
            if self._stop.is_set():  # the interrupted connection of a stopped reply: not a failure
                self.finished.emit({"stopped": True})
            else:
                self.failed.emit(str(error))

    def _fit(
        self, model: ModelInfo, prompt: str | list[dict[str, str]], sampling: SamplingOptions, policy: str
    ) -> str | list[dict[str, str]]:
        """The prompt that fits the loaded context (see core/context.py), measured for the window's gauge."""
        try:
            fitted = fit_prompt(prompt, partial(self._backends.count_tokens, model), sampling.max_tokens, policy)
        except TokenCountUnavailableError:  # a remote server that cannot count: sent whole; it says if too long
            self.context_measured.emit(0, 0)  # unknown: the window hides its gauge
            return prompt
        self.context_measured.emit(fitted.tokens, fitted.context)
        if fitted.left_out:
            self.context_trimmed.emit(fitted.left_out)
        return fitted.prompt

    @Slot()
    def shutdown(self) -> None:
        self._backends.shutdown()
