"""Side by side (the glass box): one prompt to two models, or to one model with two settings, streamed in two panes
with each reply's speed, time to first token and token counts; saved as one conversation (core/side_by_side.py).

Each pane has its own engine process and worker thread, with half the CPU threads, so the two replies stream at once
without fighting over cores; a remote model on one side goes through the same worker to its server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QThread, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QFontMetrics, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from localai_app.core import hardware
from localai_app.core.chat_session import ChatSession
from localai_app.core.context import Prompt
from localai_app.core.conversations import CHAT_LAYOUT, SAVE_INTERVAL, ChatSettings, ConversationStore, Message
from localai_app.core.engine_manager import EngineManager, manager_for
from localai_app.core.errors import AppError
from localai_app.core.estimate import Overrides
from localai_app.core.library import ModelInfo
from localai_app.core.paths import AppPaths
from localai_app.core.reasoning import ReasoningSplitter
from localai_app.core.remote import RemoteBackend, RemoteServers
from localai_app.core.side_by_side import SIDES, SideBySideSession, settings_label, threads_per_side
from localai_app.ui.chat_settings_panel import ChatSettingsPanel
from localai_app.ui.chat_view import ChatView, reply_note
from localai_app.ui.engine_worker import EngineWorker
from localai_app.ui.presenter import presenter_style
from localai_app.ui.send_on_enter import SendOnEnter

SIDE_NAMES = ("Left", "Right")


def stats_line(stats: Mapping[str, Any], state: str) -> str:
    """Under a pane: how its reply ended, with the prompt's size next to the reply's speed."""
    note = reply_note(stats, state)
    prompt = stats.get("prompt_tokens")
    return f"{note} · prompt {prompt} tokens" if state == "complete" and isinstance(prompt, int) and note else note


class SidePane(QWidget):
    """One side: its model and settings, its reply as it streams, and that reply's numbers."""

    generate_requested = Signal(object, object, object, object)  # model, prompt, sampling, ChatSettings
    reply_ended = Signal()

    def __init__(self, name: str, chat: ChatSession, worker: EngineWorker, store: ConversationStore) -> None:
        super().__init__()
        self.chat = chat
        self.worker = worker
        self.models: list[ModelInfo] = []
        self.busy = False
        self._splitter = ReasoningSplitter()
        self._split = False
        self._pieces = 0
        self.model_picker = QComboBox()
        self.model_picker.setAccessibleName(f"{name} model")
        self.model_picker.setMinimumContentsLength(18)
        self.settings_button = QPushButton("Settings")
        self.settings_button.setCheckable(True)
        self.settings_button.setToolTip(f"The {name.lower()} side's system prompt and sampling")
        self.settings_panel = ChatSettingsPanel(store)
        self.settings_panel.show_settings(ChatSettings())  # its boxes start at their minimums otherwise
        self.settings_panel.hide()
        self.caption = QLabel()
        self.caption.setObjectName("paneCaption")
        self.caption.setWordWrap(True)
        self.chat_view = ChatView(message_actions=False)
        self.chat_view.setAccessibleName(f"{name} reply")
        self.stats_label = QLabel()
        self.stats_label.setObjectName("paneStats")
        self.stats_label.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel(f"{name}:"))
        top.addWidget(self.model_picker, 1)
        top.addWidget(self.settings_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.caption)
        layout.addWidget(self.settings_panel)
        layout.addWidget(self.chat_view, 1)
        layout.addWidget(self.stats_label)
        self.settings_button.toggled.connect(self.settings_panel.setVisible)
        self.model_picker.currentIndexChanged.connect(self._describe)
        for box in (self.settings_panel.temperature, self.settings_panel.top_p):
            box.valueChanged.connect(self._describe)
        self.settings_panel.seed.valueChanged.connect(self._describe)
        self.settings_panel.system_prompt.textChanged.connect(self._describe)
        # A slow stream still reaches the disk every second (the writer itself saves only when text arrives).
        self._save_timer = QTimer(self)
        self._save_timer.setInterval(int(SAVE_INTERVAL * 1000))
        self._save_timer.timeout.connect(self.chat.flush)
        self._listen_to(worker)

    def _listen_to(self, worker: EngineWorker) -> None:
        # Bound methods, not lambdas: a lambda's hidden receiver would be parented to the worker's thread.
        self.generate_requested.connect(worker.generate)
        worker.delta.connect(self._on_delta)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.refused.connect(self._on_not_sent)
        worker.context_full.connect(self._on_not_sent)

    # -- choices -------------------------------------------------------------------------------------------------

    def set_models(self, models: list[ModelInfo], wanted: str | None) -> None:
        previous = self.current_model()
        self.models = models
        self.model_picker.blockSignals(True)
        self.model_picker.clear()
        for model in models:
            self.model_picker.addItem(model.title or model.name, model.name)
        self.model_picker.blockSignals(False)
        self.choose(wanted or (previous.name if previous else None))

    def choose(self, name: str | None) -> None:
        index = self.model_picker.findData(name) if name else -1
        self.model_picker.setCurrentIndex(index if index >= 0 else (0 if self.models else -1))
        self._describe()

    def current_model(self) -> ModelInfo | None:
        index = self.model_picker.currentIndex()
        return self.models[index] if 0 <= index < len(self.models) else None

    def settings(self) -> ChatSettings:
        model = self.current_model()
        return self.settings_panel.settings(model.name if model else None)

    def _describe(self) -> None:
        """The caption says what tells this side apart: the settings, and what kind of model answers."""
        model = self.current_model()
        how = settings_label(self.settings())
        if model is not None:  # its file's name: a base model and its instruct version often share one title
            how = f"{model.name}: {how}"
        if model is not None and model.server:
            how += f" · on the server {model.server}"
        if model is not None and not model.has_chat_template:
            how += " · text completion (a base model continues the text)"
        self.caption.setText(how)

    # -- a reply -------------------------------------------------------------------------------------------------

    def show_branch(self, branch: list[Message], titles: Mapping[str, str]) -> None:
        """A stored side: its messages, and the model and settings of its latest reply to go on with."""
        replies = [message for message in branch if message.role == "assistant"]
        if replies:
            self.choose(replies[-1].model)
            if replies[-1].settings is not None:
                self.settings_panel.show_settings(replace(replies[-1].settings, layout=CHAT_LAYOUT))
            self._describe()
            state = replies[-1].state
            self.stats_label.setText(stats_line(replies[-1].stats or {}, state))
        model = self.current_model()
        self.chat_view.show_thread(branch, completion=model is not None and not model.has_chat_template, titles=titles)

    def clear(self) -> None:
        self.chat_view.clear()
        self.stats_label.clear()

    def start(self, question: str, prompt: Prompt, model: ModelInfo) -> None:
        chat = model.has_chat_template
        self.chat_view.add_turn(
            "You" if chat else "Prompt (text completion)", question, css_class="user" if chat else "prompt"
        )
        self.chat_view.begin_reply(model.title or model.name)
        self._splitter = ReasoningSplitter(starts_in_reasoning=model.replies_start_reasoning)
        self._split = model.has_chat_template
        self._pieces = 0
        self.busy = True
        self.stats_label.setText("Waiting for the first token…")
        self._save_timer.start()
        settings = self.settings()
        self.generate_requested.emit(model, prompt, settings.sampling(), settings)

    def stop(self) -> None:
        if self.busy:
            self.worker.request_stop()

    def _on_delta(self, text: str) -> None:
        if self._pieces == 0:
            self.stats_label.setText("Streaming…")
        self._pieces += 1
        self.chat_view.append_pieces(self._splitter.feed(text) if self._split else [("answer", text)], self.chat)

    def _on_finished(self, stats: dict[str, object]) -> None:
        kept = {**stats, "pieces": self._pieces}
        self._end(stats_line(kept, "complete"), lambda: self.chat.finish(kept))

    def _on_failed(self, message: str) -> None:
        why = f"Interrupted: {message}" if message else "Interrupted."
        self._end(why, lambda: self.chat.interrupt(why))

    def _on_not_sent(self, message: str) -> None:
        why = f"Not sent: {message}"
        self._end(why, lambda: self.chat.interrupt(why))

    def _end(self, note: str, save: Callable[[], None]) -> None:
        if not self.busy:
            return
        if self._split:
            self.chat_view.append_pieces(self._splitter.finish(), self.chat)
        self.chat_view.end_reply("")
        self.stats_label.setText(note)
        self._save_timer.stop()
        self.busy = False
        try:
            save()
        except AppError as error:
            self.stats_label.setText(f"{note} The reply could not be saved: {error}")
        self.reply_ended.emit()


class SideBySideWindow(QMainWindow):
    """Two panes, one prompt box; Send asks both sides, Stop (Esc) stops both."""

    conversation_saved = Signal()

    def __init__(
        self,
        paths: AppPaths,
        store: ConversationStore,
        overrides: Overrides,
        toggle_presenting: Callable[[], None],  # the main window's F5
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Side by side")
        self.session = SideBySideSession(store)
        self._titles: dict[str, str] = {}
        cores = overrides.threads or hardware.detect(with_build=False).physical_cores
        self.threads = threads_per_side(cores)
        shared = replace(overrides, threads=self.threads)
        servers = RemoteServers(paths.config)
        self.panes: list[SidePane] = []
        self._threads: list[QThread] = []
        self._managers: list[EngineManager] = []
        for name, chat in zip(SIDE_NAMES, self.session.sides, strict=True):
            manager = manager_for(paths, shared, log_name=f"engine-{name.lower()}.log")
            worker = EngineWorker(manager, RemoteBackend(servers))
            thread = QThread(self)
            thread.setObjectName(f"side-by-side-{name.lower()}")
            worker.moveToThread(thread)
            thread.start()
            pane = SidePane(name, chat, worker, store)
            pane.reply_ended.connect(self._on_reply_ended)
            self.panes.append(pane)
            self._managers.append(manager)
            self._threads.append(thread)
        self._build(cores)
        self.resize(1240, 760)
        # The main window's presenter mode, which this window follows (see set_presenting), from here too.
        QShortcut(QKeySequence("F5"), self).activated.connect(toggle_presenting)

    def _build(self, cores: int) -> None:
        self.explanation = QLabel(
            f"Each side runs in its own engine with {self.threads} of this machine's {cores} cores, so both stream at "
            "once. The same model on both sides runs in two engines that share its file: the second costs only its own "
            "context and working memory. A model on a remote server runs there."
        )
        self.explanation.setWordWrap(True)
        self.explanation.setToolTip(self.explanation.text())
        self.explanation.setObjectName("sideBySideExplanation")
        splitter = QSplitter()
        for pane in self.panes:
            splitter.addWidget(pane)
        self.prompt_box = QPlainTextEdit()
        self.prompt_box.setAccessibleName("Message to both sides")
        self.prompt_box.setPlaceholderText("One message for both sides (Enter sends, Shift+Enter for a new line)")
        self._fit_prompt_box()
        self.send_button = QPushButton("Send")
        self.send_button.setToolTip("Send to both sides (Enter)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop both replies (Esc)")
        self.stop_button.setShortcut(QKeySequence("Esc"))
        self.stop_button.setEnabled(False)
        self.new_button = QPushButton("New")
        self.new_button.setToolTip("A new side-by-side conversation")
        self.message_label = QLabel()
        self.message_label.setObjectName("sideBySideMessage")
        self.message_label.setWordWrap(True)
        self.prompt_box.installEventFilter(SendOnEnter(self.send_button))
        buttons = QVBoxLayout()
        for button in (self.send_button, self.stop_button, self.new_button):
            buttons.addWidget(button)
        input_row = QHBoxLayout()
        input_row.addWidget(self.prompt_box, 1)
        input_row.addLayout(buttons)
        layout = QVBoxLayout()
        layout.addWidget(self.explanation)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.message_label)
        layout.addLayout(input_row)
        central = QWidget()
        central.setLayout(layout)
        self.setCentralWidget(central)
        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.new_button.clicked.connect(self.new_conversation)

    def _fit_prompt_box(self) -> None:
        """Three lines at the text size in use (presenter mode changes the application's font)."""
        self.prompt_box.setFixedHeight(QFontMetrics(QApplication.font()).lineSpacing() * 3 + 12)

    @property
    def busy(self) -> bool:
        return any(pane.busy for pane in self.panes)

    def set_models(self, models: list[ModelInfo]) -> None:
        """The picker's models (the library's and the remote servers'); the left side starts on `models[0]`'s pick."""
        self._titles = {model.name: model.title or model.name for model in models}
        for pane in self.panes:
            pane.set_models(models, None)

    def choose(self, left: str | None, right: str | None) -> None:
        for pane, name in zip(self.panes, (left, right), strict=True):
            pane.choose(name)

    def send(self) -> None:
        text = self.prompt_box.toPlainText().strip()
        models = [pane.current_model() for pane in self.panes]
        if self.busy or not text:
            return
        chosen = [model for model in models if model is not None]
        if len(chosen) < SIDES:
            self.message_label.setText("Pick a model on each side first.")
            return
        self.message_label.clear()
        try:
            prompts = self.session.ask(text, [(m, pane.settings()) for m, pane in zip(chosen, self.panes, strict=True)])
        except AppError as error:  # the message stays in the box, to send again
            self.message_label.setText(f"{error} Your message was not sent.")
            return
        self.prompt_box.clear()
        self._set_busy(True)
        for pane, prompt, model in zip(self.panes, prompts, chosen, strict=True):
            pane.start(text, prompt, model)
        self.conversation_saved.emit()

    def stop(self) -> None:
        for pane in self.panes:
            pane.stop()

    def new_conversation(self) -> None:
        if self.busy:
            self.message_label.setText("Stop the replies first, or wait for them to finish.")
            return
        self.session.start_new()
        for pane in self.panes:
            pane.clear()
        self.prompt_box.setFocus()

    def open_conversation(self, conversation_id: int) -> None:
        """Shows a stored side-by-side conversation in the two panes; the next message continues each side."""
        if self.busy:
            self.message_label.setText("Stop the replies first, or wait for them to finish.")
            return
        try:
            branches = self.session.open(conversation_id)
        except AppError as error:
            self.message_label.setText(str(error))
            return
        self.message_label.clear()
        for pane, branch in zip(self.panes, branches, strict=True):
            pane.show_branch(branch, self._titles)

    def _on_reply_ended(self) -> None:
        if not self.busy:
            self._set_busy(False)
        self.conversation_saved.emit()

    def _set_busy(self, busy: bool) -> None:
        self.send_button.setEnabled(not busy)
        self.new_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        for pane in self.panes:
            pane.model_picker.setEnabled(not busy)

    def set_presenting(self, on: bool) -> None:
        """Follows the main window's presenter mode: full screen and high contrast (its text size is the
        application's font, which the main window sets)."""
        self.explanation.setVisible(not on)  # the room needs the replies; the why stays in the tooltip
        if on:
            dark = self.palette().color(QPalette.ColorRole.Base).lightnessF() < 0.5
            self.setStyleSheet(presenter_style(dark))
            self.showFullScreen()
        else:
            self.setStyleSheet("")
            self.showNormal()
        self._fit_prompt_box()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing stops both replies and both engines (their memory is the machine's again); opening the window
        again starts them at the next message."""
        self.stop()
        for manager in self._managers:
            manager.shutdown()  # also ends a stream a worker may be reading: the pane keeps its text as interrupted
        super().closeEvent(event)

    def shutdown(self) -> None:
        """The app is closing: the engines and their threads end, and a reply cut short keeps its text, marked."""
        self.stop()
        for manager in self._managers:
            manager.shutdown()
        for thread in self._threads:
            thread.quit()
            thread.wait(10_000)
        for pane in self.panes:
            pane.worker.shutdown()
            if pane.busy:
                pane.chat.interrupt("Interrupted: the app was closed.")
                pane.busy = False
