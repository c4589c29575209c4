"""The engine seen from the GUI: an EngineManager driven on its own QThread, reporting by queued signals.

Loading a model and reading the token stream block, so they never run on the GUI thread. Stop is a flag the
stream loop checks at every token; closing the stream makes the engine stop generating.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from PySide6.QtCore import QObject, Signal, Slot

from localai_app.core.context import ContextFullError, fit_to_context
from localai_app.core.conversations import ChatSettings
from localai_app.core.engine_manager import EngineManager
from localai_app.core.errors import AppError, WontFitError
from localai_app.core.library import ModelInfo
from localai_app.core.replies import Delta, SamplingOptions


class EngineWorker(QObject):
    loading = Signal(str)  # model name
    loaded = Signal(str)
    planned = Signal(object)  # the LoadPlan a load used (None for a model that cannot be estimated)
    load_failed = Signal(str)  # one sentence
    refused = Signal(str)  # the model would not fit: the numbers and ways out; the user may insist
    delta = Signal(str)
    finished = Signal(dict)  # ReplyStats.as_dict(), plus "stopped"
    failed = Signal(str)
    context_measured = Signal(int, int)  # tokens of the prompt sent, the context length
    context_trimmed = Signal(int)  # how many of the oldest messages were left out of the prompt to fit
    context_full = Signal(str)  # nothing was sent: why, and what the user can do

    def __init__(self, manager: EngineManager) -> None:
        super().__init__()
        self._manager = manager
        self._default_context = manager.overrides.context
        self._stop = threading.Event()

    def request_stop(self) -> None:
        """Thread-safe: called directly from the GUI thread while `generate` runs here."""
        self._stop.set()
        self._manager.interrupt()  # a reply still in its prompt pass has no token yet to notice the flag at

    @Slot(object, bool)
    def load(self, model: ModelInfo, insist: bool) -> None:
        self.loading.emit(model.name)
        try:
            self._manager.load(model, insist=insist)
        except WontFitError as error:
            self.refused.emit(str(error))
        except AppError as error:
            self.load_failed.emit(str(error))
        else:
            self.planned.emit(self._manager.last_plan)
            self.loaded.emit(model.name)

    @Slot(object, object, object, object)
    def generate(
        self, model: ModelInfo, prompt: str | list[dict[str, str]], sampling: SamplingOptions, chat: ChatSettings
    ) -> None:
        """Streams a reply to `prompt`, loading `model` first if needed, with the conversation's context length
        (None: the app's setting, else what fits) and its policy for a conversation that outgrows it."""
        self._stop.clear()
        self._manager.overrides = replace(self._manager.overrides, context=chat.context_length or self._default_context)
        loaded = self._manager.loaded_model
        if loaded is None or loaded.path != model.path:
            self.loading.emit(model.name)
        try:
            self._manager.load(model)
        except WontFitError as error:
            self.refused.emit(str(error))  # the window ends the reply it began
            return
        except AppError as error:
            self.failed.emit(str(error))
            return
        if loaded is None or loaded.path != model.path:
            self.planned.emit(self._manager.last_plan)
        try:
            prompt = self._fit(model, prompt, sampling, chat.context_policy)
        except ContextFullError as error:
            self.context_full.emit(str(error))
            return
        except AppError as error:
            self.failed.emit(str(error))
            return
        try:
            events = self._manager.stream(model, prompt, sampling)
            for event in events:
                if isinstance(event, Delta):
                    self.delta.emit(event.text)
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
        tokens, context = self._manager.count_tokens(model, prompt)
        if isinstance(prompt, list):
            whole = prompt

            def count(messages: list[dict[str, str]]) -> int:
                return tokens if messages is whole else self._manager.count_tokens(model, messages)[0]

            fitted = fit_to_context(prompt, count, context, sampling.max_tokens, policy)
            prompt, tokens = fitted.messages, fitted.tokens
            self.context_measured.emit(tokens, context)
            if fitted.left_out:
                self.context_trimmed.emit(fitted.left_out)
        else:
            self.context_measured.emit(tokens, context)
        return prompt

    @Slot()
    def shutdown(self) -> None:
        self._manager.shutdown()
