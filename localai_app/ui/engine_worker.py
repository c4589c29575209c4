"""The engine seen from the GUI: an EngineManager driven on its own QThread, reporting by queued signals.

Loading a model and reading the token stream block, so they never run on the GUI thread. Stop is a flag the
stream loop checks at every token; closing the stream makes the engine stop generating.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal, Slot

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

    def __init__(self, manager: EngineManager) -> None:
        super().__init__()
        self._manager = manager
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

    @Slot(object, object, object)
    def generate(self, model: ModelInfo, prompt: str | list[dict[str, str]], sampling: SamplingOptions) -> None:
        self._stop.clear()
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

    @Slot()
    def shutdown(self) -> None:
        self._manager.shutdown()
