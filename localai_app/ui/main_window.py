"""The main window: conversations on the left, the chat with its model picker, prompt box, Send/Stop and panels
(library, hardware, discover), and the conversation's settings on the right."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QRect, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QFontMetrics, QKeySequence, QPalette, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from localai_app.core import hardware
from localai_app.core.advice import Advice, advise_here
from localai_app.core.chat_session import ChatSession, open_store
from localai_app.core.choices import Assessment, assess
from localai_app.core.context import DROP_OLDEST, NEARLY_FULL, Prompt
from localai_app.core.conversations import SAVE_INTERVAL, SIDE_BY_SIDE, ChatSettings
from localai_app.core.engine_manager import EngineManager
from localai_app.core.errors import AppError
from localai_app.core.estimate import LoadPlan
from localai_app.core.hardware import Hardware
from localai_app.core.library import Library, ModelInfo
from localai_app.core.model_shape import ModelShape
from localai_app.core.paths import AppPaths
from localai_app.core.reasoning import ReasoningSplitter
from localai_app.core.remote import RemoteBackend, RemoteServers, list_models
from localai_app.core.replies import SamplingOptions, TokenChoice, TokenProbability
from localai_app.core.reply_tokens import ReplyTokens
from localai_app.core.settings import DEFAULT_PRESENTER_SCALE, Settings, save_settings
from localai_app.ui.background import run_in_background
from localai_app.ui.chat_settings_panel import ChatSettingsPanel
from localai_app.ui.chat_view import ChatView, reply_note
from localai_app.ui.conversation_sidebar import ConversationSidebar

if TYPE_CHECKING:
    from localai_app.core.hub import RepoDetails
    from localai_app.ui.discover_panel import DiscoverPanel
    from localai_app.ui.evaluate_panel import EvaluatePanel
    from localai_app.ui.local_api_panel import LocalApiPanel
    from localai_app.ui.remote_servers_dialog import RemoteServersDialog
    from localai_app.ui.sampling_lab import LabSettings, SamplingLab
    from localai_app.ui.side_by_side import SideBySideWindow
    from localai_app.ui.step_mode import StepMode, SteppedReply, StepStart
from localai_app.ui.engine_worker import EngineWorker
from localai_app.ui.hardware_panel import HardwarePanel
from localai_app.ui.library_panel import LibraryPanel
from localai_app.ui.presenter import presenter_style
from localai_app.ui.prompt_inspector import PromptInspector
from localai_app.ui.send_on_enter import SendOnEnter
from localai_app.ui.token_view import ALTERNATIVES, NO_STORED_TOKENS, TokenPane
from localai_app.ui.tokenizer_playground import TokenizerPlayground

MIN_SCALE, MAX_SCALE, SCALE_STEP = 0.8, 2.5, 0.1  # text size: a laptop's default up to a classroom projector
PRESENTER_MIN_SCALE, PRESENTER_MAX_SCALE = 1.5, 4.0  # presenter mode: a small room up to a hall's back row
BASE_POINT_SIZE = "localaiBasePointSize"
COMPLETION_MODE_NOTE = (
    "Text completion: this model has no chat template (it is a base model), so it continues your text "
    "instead of answering it."
)
CONTEXT_GAUGE_MS = 250  # how often the context gauge follows a reply being written


def picker_label(model: ModelInfo) -> str:
    if model.server:
        return f"{model.title}  ·  on {model.server}"
    return f"{model.title}  ·  {model.quantization}  ·  {model.size_label}"


@dataclass
class _Layout:
    """What presenter mode changes, kept to put back exactly when it ends."""

    window_state: Qt.WindowState  # maximised or not
    geometry: QRect  # where it was, when not maximised
    hidden: list[QWidget]  # what presenter mode hid (what was already hidden stays so)
    splitter_sizes: list[tuple[QSplitter, list[int]]]
    style_sheet: str


def _evaluate_button() -> QPushButton:
    button = QPushButton("Evaluate")
    button.setCheckable(True)
    button.setToolTip(
        "Benchmark models here (speed, memory, concurrency, quality), their cost against a hosted API and their "
        "licences, in a report to share"
    )
    return button


class MainWindow(QMainWindow):
    load_requested = Signal(object, bool)  # model, insist (load even if it is estimated not to fit)
    generate_requested = Signal(object, object, object, object)  # model, prompt, sampling, ChatSettings

    def __init__(self, paths: AppPaths, settings: Settings, library: Library, manager: EngineManager) -> None:
        super().__init__()
        self.setWindowTitle("localai-app")
        self._paths = paths
        self._settings = settings
        self.engine_manager = manager
        store, self._store_problem = open_store(paths.data)
        self.session = ChatSession(store)
        self._models: list[ModelInfo] = []  # the library's, then the remote servers'
        self._local_models: list[ModelInfo] | None = None  # None until the library has been listed
        self._remote_models: list[ModelInfo] = []  # from the latest listing of the remote servers
        self.remote_servers = RemoteServers(paths.config)
        # The model of the last session may be remote: the servers answer after the library has filled the picker.
        self._first_choice = settings.last_model
        self.remote_dialog: RemoteServersDialog | None = None  # built when first opened
        self.prompt_inspector: PromptInspector | None = None  # the glass box's dialogs, built when first opened
        self.tokenizer_playground: TokenizerPlayground | None = None
        self.sampling_lab: SamplingLab | None = None
        self.step_mode: StepMode | None = None
        self.side_by_side: SideBySideWindow | None = None  # two models (or settings) on one prompt; built when opened
        self._busy = False
        self._pieces = 0
        self.local_api_panel: LocalApiPanel | None = None  # built when first shown, like Discover
        self.evaluate_panel: EvaluatePanel | None = None  # built when first shown
        self._library = library
        self._presenting: _Layout | None = None  # the layout to go back to, while in presenter mode

        self._build_widgets(settings, library)
        self._start_worker(manager)
        self._connect()
        self.set_ui_scale(settings.ui_scale)
        self._shown = False
        self._closed = False
        self._context = (0, 0)  # tokens of the last prompt sent, and the context length it was measured against
        self._splitter = ReasoningSplitter()
        self._split_replies = False
        self._warned_nearly_full: set[int | None] = set()
        # A slow stream still reaches the disk every second (the writer itself saves only when text arrives).
        self._save_timer = QTimer(self)
        self._save_timer.setInterval(int(SAVE_INTERVAL * 1000))
        self._save_timer.timeout.connect(self.session.flush)
        # The context gauge follows a reply as it is written, a few times a second: a label and a bar redrawn per
        # token would take GUI time from the engine on a small machine.
        self._context_timer = QTimer(self)
        self._context_timer.setSingleShot(True)
        self._context_timer.setInterval(CONTEXT_GAUGE_MS)
        self._context_timer.timeout.connect(self._show_context_so_far)
        if self._store_problem:
            self._show_error(self._store_problem)
            self.recover_button.setVisible(store.quarantined is not None)

    def _build_widgets(self, settings: Settings, library: Library) -> None:
        top = self._build_top_row()

        self.chat_view = ChatView()
        self.chat_view.setAccessibleName("Conversation")
        self.library_panel = LibraryPanel(library, self._advise_all)
        self.library_panel.hide()
        self.hardware_panel = HardwarePanel(self._survey)
        self.hardware_panel.hide()
        self.token_pane = TokenPane()  # the token view: shown while Tokens is on
        self.token_pane.hide()
        self.token_view = self.token_pane.view
        self._token_reply: int | None = None  # the stored reply whose tokens the token view shows
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.chat_view)
        splitter.addWidget(self.token_pane)
        splitter.addWidget(self.library_panel)
        splitter.addWidget(self.hardware_panel)
        splitter.setStretchFactor(0, 3)
        self._panels = splitter
        self.discover_panel: DiscoverPanel | None = None  # built when first needed: the Hub libraries load slowly

        self._build_banner()

        input_row = self._build_input_row()
        self._build_settings_panel(settings)
        status_row = self._build_status_row()

        layout = QVBoxLayout()
        layout.addLayout(top)
        layout.addWidget(self.mode_label)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.banner)
        layout.addLayout(input_row)
        layout.addLayout(status_row)
        chat_column = QWidget()
        chat_column.setObjectName("chatColumn")
        chat_column.setLayout(layout)
        self.sidebar = ConversationSidebar(self.session.store)
        self.sidebar.setMinimumWidth(180)
        central = QSplitter(Qt.Orientation.Horizontal)
        central.addWidget(self.sidebar)
        central.addWidget(chat_column)
        central.addWidget(self.settings_panel)
        central.setStretchFactor(1, 1)
        central.setSizes([240, 1000, 320])
        self._columns = central
        self.setCentralWidget(central)
        self.resize(1240, 760)

    def _build_status_row(self) -> QHBoxLayout:
        """How full the context is, and the last reply's speed."""
        self.stats_label = QLabel()
        self.stats_label.setObjectName("statsLabel")
        self.context_gauge = QProgressBar()
        self.context_gauge.setAccessibleName("Context used")
        self.context_gauge.setTextVisible(False)
        self.context_gauge.setFixedWidth(120)
        self.context_gauge.hide()  # until the first prompt has been measured: an empty bar says nothing
        self.context_label = QLabel()
        self.context_label.setObjectName("contextLabel")
        status_row = QHBoxLayout()
        status_row.addWidget(self.context_gauge)
        status_row.addWidget(self.context_label)
        status_row.addStretch(1)
        status_row.addWidget(self.stats_label)
        return status_row

    def _build_input_row(self) -> QHBoxLayout:
        self.prompt_box = QPlainTextEdit()
        self.prompt_box.setAccessibleName("Message")
        self.prompt_box.setPlaceholderText("Write a message (Enter sends, Shift+Enter for a new line)")
        self.send_button = QPushButton("Send")
        self.send_button.setToolTip("Send (Enter)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        self.stop_button.setEnabled(False)
        self.prompt_box.installEventFilter(SendOnEnter(self.send_button))
        input_row = QHBoxLayout()
        input_row.addWidget(self.prompt_box, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        # The glass box: what the model reads of this conversation, and how any text splits into tokens.
        self.inspect_button = QPushButton("Inspect prompt")
        self.inspect_button.setAccessibleName("Inspect prompt")
        self.inspect_button.setToolTip(
            "Prompt inspector (Ctrl+I): the exact text the model receives, its tokens, its chat template"
        )
        self.tokenizer_button = QPushButton("Tokenizer")
        self.tokenizer_button.setAccessibleName("Tokenizer playground")
        self.tokenizer_button.setToolTip("Tokenizer playground (Ctrl+Shift+T): any text's tokens, two models compared")
        self.lab_button = QPushButton("Sampling lab")
        self.lab_button.setToolTip(
            "Sampling lab (Ctrl+L): the next token's candidates as temperature, top-k, top-p and min-p change"
        )
        self.step_button = QPushButton("Step")
        self.step_button.setAccessibleName("Step mode")
        self.step_button.setToolTip("Step mode (Ctrl+Shift+Right): the reply one token per key press")
        buttons.addWidget(self.inspect_button)
        buttons.addWidget(self.tokenizer_button)
        buttons.addWidget(self.lab_button)
        buttons.addWidget(self.step_button)
        input_row.addLayout(buttons)
        return input_row

    def _build_top_row(self) -> QHBoxLayout:
        """Model picker, panel toggles, and what the current load chose."""
        self.model_picker = QComboBox()
        self.model_picker.setAccessibleName("Model")
        self.model_picker.setMinimumContentsLength(28)
        self.mode_label = QLabel()
        self.mode_label.setWordWrap(True)
        self.mode_label.setObjectName("modeLabel")
        self.library_button = QPushButton("Library")
        self.library_button.setCheckable(True)
        self.remote_button = QPushButton("Remote servers…")
        self.remote_button.setToolTip("Chat with models on other machines: any OpenAI-compatible server")
        self.hardware_button = QPushButton("Hardware")
        self.hardware_button.setCheckable(True)
        self.discover_button = QPushButton("Discover")
        self.discover_button.setCheckable(True)
        self.discover_button.setToolTip("Find models: recommended ones (offline) and the Hugging Face Hub")
        self.local_api_button = QPushButton("Local API")
        self.local_api_button.setCheckable(True)
        self.local_api_button.setToolTip("Serve the loaded model to other programs through an OpenAI-compatible API")
        self.evaluate_button = _evaluate_button()
        self.settings_button = QPushButton("Settings")
        self.settings_button.setCheckable(True)
        self.settings_button.setToolTip("This conversation's system prompt, sampling and presets")
        self.present_button = QPushButton("Present")
        self.present_button.setCheckable(True)
        self.present_button.setToolTip(
            "Presenter mode (F5): full screen, large high-contrast text, panels hidden; Ctrl+plus and Ctrl+minus "
            "set its text size. F5 or Esc leaves it; while a reply runs, Esc stops the reply first."
        )
        self.token_button = QPushButton("Tokens")
        self.token_button.setAccessibleName("Token view")
        self.token_button.setCheckable(True)
        self.token_button.setToolTip(
            "Token view (Ctrl+T): the next replies token by token, coloured by probability; hover or click a token "
            "for the likeliest alternatives, and click one to continue the reply from it as a new version"
        )
        self.load_label = QLabel()  # what the load chose (context, threads, GPU layers); the reasons as tooltip
        self.load_label.setObjectName("loadLabel")
        top = QHBoxLayout()
        top.addWidget(QLabel("Model:"))
        top.addWidget(self.model_picker)
        top.addWidget(self.library_button)
        top.addWidget(self.remote_button)
        top.addWidget(self.hardware_button)
        top.addWidget(self.discover_button)
        top.addWidget(self.local_api_button)
        top.addWidget(self.evaluate_button)
        top.addWidget(self.settings_button)
        top.addWidget(self.present_button)
        top.addWidget(self.token_button)
        self.side_by_side_button = QPushButton("Side by side")
        self.side_by_side_button.setToolTip(
            "Side by side (Ctrl+Shift+S): one message to two models, or to one model with two settings, each reply "
            "with its speed and token counts"
        )
        top.addWidget(self.side_by_side_button)
        top.addStretch(1)
        top.addWidget(self.load_label)
        return top

    def _build_banner(self) -> None:
        """Errors and warnings above the prompt box; a refused load adds "Load anyway"."""
        self.error_banner = QLabel()
        self.error_banner.setObjectName("errorBanner")
        self.error_banner.setWordWrap(True)
        self.insist_button = QPushButton("Load anyway")
        self.insist_button.setToolTip("Load although the estimate says it will not fit: the computer may freeze.")
        self.insist_button.hide()
        self.recover_button = QPushButton("Recover")
        self.recover_button.setToolTip("Copy back the conversations that can still be read from the damaged file")
        self.recover_button.hide()
        self.banner = QWidget()
        self.banner.setObjectName("banner")
        self.banner.setStyleSheet("QWidget#banner { background: #fde2e1; } QLabel { color: #7a1212; padding: 6px; }")
        banner_row = QHBoxLayout(self.banner)
        banner_row.setContentsMargins(0, 0, 6, 0)
        banner_row.addWidget(self.error_banner, 1)
        banner_row.addWidget(self.insist_button)
        banner_row.addWidget(self.recover_button)
        self.banner.hide()

    def _build_settings_panel(self, settings: Settings) -> None:
        """The conversation's settings, starting from the last ones used; the window's own shortcuts to them."""
        self.settings_panel = ChatSettingsPanel(self.session.store)
        self.settings_panel.show_settings(
            ChatSettings(
                temperature=settings.sampling.temperature,
                max_tokens=settings.sampling.max_tokens,
                seed=settings.sampling.seed,
            )
        )
        self.settings_panel.hide()
        self.temperature = self.settings_panel.temperature
        self.max_tokens = self.settings_panel.max_tokens
        self.seed = self.settings_panel.seed

    def _start_worker(self, manager: EngineManager) -> None:
        self._thread = QThread(self)
        self._thread.setObjectName("engine-worker")
        self.worker = EngineWorker(manager, RemoteBackend(self.remote_servers))
        self.worker.moveToThread(self._thread)
        self.load_requested.connect(self.worker.load)
        self.generate_requested.connect(self.worker.generate)
        # Bound methods, not lambdas: a lambda's hidden receiver would be parented to the worker's thread.
        self.worker.loading.connect(self._on_loading)
        self.worker.loaded.connect(self._on_loaded)
        self.worker.planned.connect(self._on_planned)
        self.worker.load_failed.connect(self._show_error)
        self.worker.refused.connect(self._on_refused)
        self.worker.delta.connect(self._on_delta)
        self.worker.token_probabilities.connect(self._on_token_probabilities)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.context_measured.connect(self._on_context_measured)
        self.worker.context_trimmed.connect(self._on_context_trimmed)
        self.worker.context_full.connect(self._on_context_full)
        self._thread.start()

    def _connect(self) -> None:
        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.library_button.toggled.connect(self.library_panel.setVisible)
        self.remote_button.clicked.connect(self._open_remote_servers)
        self.settings_button.toggled.connect(self.settings_panel.setVisible)
        self.settings_panel.message.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.hardware_button.toggled.connect(self._toggle_hardware)
        self.discover_button.toggled.connect(self._toggle_discover)
        self.local_api_button.toggled.connect(self._toggle_local_api)
        self.evaluate_button.toggled.connect(self._toggle_evaluate)
        self.present_button.toggled.connect(self.set_presenting)
        # Window-wide shortcuts, so both open in presenter mode too, where these buttons are hidden.
        self.inspect_button.clicked.connect(self.inspect_prompt)
        QShortcut(QKeySequence("Ctrl+I"), self).activated.connect(self.inspect_prompt)
        self.tokenizer_button.clicked.connect(self.open_tokenizer_playground)
        QShortcut(QKeySequence("Ctrl+Shift+T"), self).activated.connect(self.open_tokenizer_playground)
        self.side_by_side_button.clicked.connect(self.open_side_by_side)
        QShortcut(QKeySequence("Ctrl+Shift+S"), self).activated.connect(self.open_side_by_side)
        self.lab_button.clicked.connect(self.open_sampling_lab)
        QShortcut(QKeySequence("Ctrl+L"), self).activated.connect(self.open_sampling_lab)
        self.step_button.clicked.connect(self.open_step_mode)
        QShortcut(QKeySequence("Ctrl+Shift+Right"), self).activated.connect(self.open_step_mode)
        self.token_button.toggled.connect(self.token_pane.setVisible)
        QShortcut(QKeySequence("Ctrl+T"), self).activated.connect(self.token_button.toggle)
        self.token_view.what_if.connect(self._what_if)
        self.insist_button.clicked.connect(self._insist)
        self.recover_button.clicked.connect(self._recover_conversations)
        self.sidebar.opened.connect(self.open_conversation)
        self.sidebar.new_requested.connect(self.new_conversation)
        self.sidebar.deleted.connect(self._on_conversation_deleted)
        self.sidebar.message.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.sidebar.install_shortcuts(self)
        self.chat_view.message_action.connect(self._on_message_action)
        for keys, step in (
            (QKeySequence.StandardKey.ZoomIn, SCALE_STEP),
            (QKeySequence.StandardKey.ZoomOut, -SCALE_STEP),
        ):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.activated.connect(partial(self._zoom, step))
        QShortcut(QKeySequence("Ctrl+0"), self).activated.connect(partial(self._zoom, None))
        QShortcut(QKeySequence(Qt.Key.Key_F5), self).activated.connect(self.present_button.toggle)
        # Esc also leaves presenter mode, but only while no reply runs: then the (disabled) Stop button's Esc does not
        # count, and the two never compete for one key press; a press can never end the mode instead of the reply.
        self._escape_leaves = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        self._escape_leaves.setEnabled(False)
        self._escape_leaves.activated.connect(partial(self.set_presenting, False))
        self.model_picker.currentIndexChanged.connect(self._on_model_chosen)
        # A model the user picks by hand wins over last session's remote model, however late its server answers.
        self.model_picker.activated.connect(self._forget_first_choice)
        self.library_panel.models_changed.connect(self._set_models)
        self.library_panel.message.connect(lambda text: self.statusBar().showMessage(text, 10000))

    # -- models ------------------------------------------------------------------------------------------------

    def current_model(self) -> ModelInfo | None:
        index = self.model_picker.currentIndex()
        return self._usable()[index] if 0 <= index < len(self._usable()) else None

    def _usable(self) -> list[ModelInfo]:
        return [model for model in self._models if model.usable]

    def _set_models(self, models: list[ModelInfo]) -> None:
        """The library's `models`, with the remote servers' from their latest listing, in the picker."""
        previous = self.current_model()
        self._local_models = models
        self._models = [*models, *self._remote_models]
        wanted = previous.name if previous else self._settings.last_model
        self.model_picker.blockSignals(True)
        self.model_picker.clear()
        for model in self._usable():
            self.model_picker.addItem(picker_label(model), model.name)
        names = [model.name for model in self._usable()]
        self.model_picker.setCurrentIndex(names.index(wanted) if wanted in names else (0 if names else -1))
        self.model_picker.blockSignals(False)
        if self.side_by_side is not None:  # its pickers offer the same models, each keeping its choice
            self.side_by_side.set_models(self._usable())
        if self.current_model() != previous or previous is None:
            self._on_model_chosen()

    def _on_model_chosen(self) -> None:
        model = self.current_model()
        if model is None:
            self.mode_label.setText("No usable model: import a GGUF file from the Library.")
            return
        self._settings.last_model = model.name
        licence = f"Licence: {model.licence or 'unknown'}."
        self.mode_label.setText(
            f"{COMPLETION_MODE_NOTE} {licence}"
            if not model.has_chat_template
            else f"Chat with {model.title} on the server {model.server}."
            if model.server
            else f"Chat with {model.title}. {licence}"
        )
        self.mode_label.setStyleSheet("" if model.has_chat_template else "color: #8a5a00; font-weight: bold;")
        self.prompt_box.setPlaceholderText(
            "Write a message (Enter sends, Shift+Enter for a new line)"
            if model.has_chat_template
            else "Write the beginning of a text for the model to continue (Enter sends)"
        )
        self.hardware_panel.show_model(None if model.server else model)  # a remote model uses another's memory
        self.load_requested.emit(model, False)  # preload, so the first reply does not wait for the load

    def refresh_remote_models(self) -> None:
        """List the remote servers' models off the GUI thread; one that is down only leaves its models out."""
        run_in_background(self, partial(list_models, self.remote_servers), self._show_remote_models, self._show_error)

    def _show_remote_models(self, listing: tuple[list[ModelInfo], list[str]]) -> None:
        models, problems = listing
        self._remote_models = models
        if problems:
            self.statusBar().showMessage(" ".join(problems), 15000)
        first, self._first_choice = self._first_choice, None
        if self._local_models is None:
            return  # the library's listing fills the picker, these included, and picks the last model itself
        self._set_models(self._local_models)
        if first in {model.name for model in models} and not self._busy:
            self.model_picker.setCurrentIndex(self.model_picker.findData(first))

    def _forget_first_choice(self) -> None:
        self._first_choice = None

    def _open_remote_servers(self) -> None:
        from localai_app.ui.remote_servers_dialog import RemoteServersDialog

        if self.remote_dialog is None:
            self.remote_dialog = RemoteServersDialog(self.remote_servers, self)
            self.remote_dialog.changed.connect(self.refresh_remote_models)
        self.remote_dialog.show()
        self.remote_dialog.activateWindow()  # already open behind the window: bring it forward

    # -- glass box ---------------------------------------------------------------------------------------------

    def inspect_prompt(self) -> None:
        """Opens (or brings forward) the prompt inspector on the conversation as it is now."""
        if self.prompt_inspector is None:
            self.prompt_inspector = PromptInspector(self._prompt_to_inspect, self.worker.client_for, self)
        self._bring_forward(self.prompt_inspector)
        self.prompt_inspector.refresh()

    def _prompt_to_inspect(self, *, afresh: bool = False) -> tuple[ModelInfo, Prompt, ChatSettings] | str:
        """What Send would send now (the message being written included), or why there is nothing yet; `afresh`:
        with no message written, another answer to the last question (see ChatSession.preview)."""
        model = self.current_model()
        if model is None:
            return "Pick a model first: the prompt is what that model would read."
        settings = self.chat_settings(model)
        prompt = self.session.preview(self.prompt_box.toPlainText().strip(), model, settings, afresh=afresh)
        if prompt is None:
            return "Write a message first: the inspector shows what the model would read with it."
        return model, prompt, settings

    def open_tokenizer_playground(self) -> None:
        if self.tokenizer_playground is None:
            self.tokenizer_playground = TokenizerPlayground(
                self.current_model,
                self.worker.client_for,
                lambda: [model for model in self._usable() if not model.server],  # a second engine runs files here
                log_file=self._paths.logs / "vocabulary-engine.log",
                parent=self,
            )
        self._bring_forward(self.tokenizer_playground)
        self.tokenizer_playground.refresh()

    def open_sampling_lab(self) -> None:
        """Opens (or brings forward) the sampling lab on the next token of the conversation as it is now."""
        from localai_app.ui.sampling_lab import SamplingLab

        if self.sampling_lab is None:
            lab = SamplingLab(self._prompt_to_inspect, self.worker.client_for, self._use_lab_settings, self)
            self.sampling_lab = lab
        self._bring_forward(self.sampling_lab)
        self.sampling_lab.refresh()

    def _use_lab_settings(self, chosen: LabSettings) -> None:
        """The lab's sampling settings and seed, into the settings panel: the conversation's next replies use them."""
        current = self.settings_panel.settings(None)
        self.settings_panel.show_settings(
            replace(
                current,
                temperature=chosen.temperature,
                top_k=chosen.top_k,
                top_p=chosen.top_p,
                min_p=chosen.min_p,
                seed=chosen.seed,
            )
        )
        self.statusBar().showMessage("The sampling lab's settings and seed are now this conversation's.", 10000)

    def open_step_mode(self) -> None:
        """Opens (or brings forward) step mode, started over on the conversation as it is now."""
        from localai_app.ui.step_mode import StepMode

        if self.step_mode is None:
            self.step_mode = StepMode(self._reply_to_step, self.worker.client_for, self._keep_stepped, self)
        self._bring_forward(self.step_mode)
        self.step_mode.refresh()

    def _reply_to_step(self) -> StepStart | str:
        """Step mode's reply: to the message being written or, with none, another answer to the last question."""
        from localai_app.ui.step_mode import StepStart

        wanted = self._prompt_to_inspect(afresh=True)
        if isinstance(wanted, str):
            return wanted
        question = self.prompt_box.toPlainText().strip()
        return StepStart(*wanted, question=question, conversation_id=self.session.conversation_id)

    def _keep_stepped(self, stepped: SteppedReply) -> str | None:
        """Saves step mode's reply in the conversation and shows it; returns why it could not, or None."""
        start = stepped.start
        if self._busy:
            return "Stop the reply being written first, then keep this one."
        if self.session.conversation_id != start.conversation_id:
            return "Another conversation is on show now: Start over to step a reply to it."
        try:
            self.session.keep(
                start.question, stepped.text, stepped.tokens, start.model, start.settings, stats=stepped.stats
            )
        except AppError as error:
            return f"The reply could not be kept: {error}"
        if start.question and self.prompt_box.toPlainText().strip() == start.question:
            self.prompt_box.clear()  # sent with the reply, as Send does
        self.sidebar.refresh()
        self.sidebar.set_current(self.session.conversation_id)
        self._show_current()
        self._show_stored_tokens()
        return None

    def open_side_by_side(self, conversation_id: int | None = None) -> SideBySideWindow:
        """Opens (or brings forward) the side-by-side window, on a stored side-by-side conversation if given."""
        from localai_app.ui.side_by_side import SideBySideWindow

        if self.side_by_side is None:
            window = SideBySideWindow(
                self._paths, self.session.store, self.engine_manager.overrides, self.present_button.toggle, self
            )
            window.conversation_saved.connect(self.sidebar.refresh)
            window.set_models(self._usable())
            current = self.current_model()
            others = [model.name for model in self._usable() if current is None or model.name != current.name]
            window.choose(current.name if current else None, others[0] if others else None)
            self.side_by_side = window
        if conversation_id is not None:
            self.side_by_side.open_conversation(conversation_id)
        if self.presenting:
            self.side_by_side.set_presenting(True)
        self._bring_forward(self.side_by_side)
        return self.side_by_side

    @staticmethod
    def _bring_forward(dialog: QWidget) -> None:
        """Non-modal, above the window (presenter mode's full screen too), and forward if it was already open."""
        dialog.show()
        dialog.activateWindow()

    # -- chat --------------------------------------------------------------------------------------------------

    def sampling(self) -> SamplingOptions:
        return self.settings_panel.settings(None).sampling()

    def send(self) -> None:
        text = self.prompt_box.toPlainText().strip()
        model = self.current_model()
        if self._busy or not text or model is None:
            return
        self._hide_banner()
        try:
            prompt = self.session.ask(text, model, self.chat_settings(model))
        except AppError as error:  # the message stays in the box, to send again
            self._show_error(f"{error} Your message was not sent.")
            return
        self.prompt_box.clear()
        if model.has_chat_template:
            self.chat_view.add_turn("You", text, css_class="user")
        else:
            self.chat_view.add_turn("Prompt (text completion)", text, css_class="prompt")
        self._start_reply(model, prompt)

    def _start_reply(self, model: ModelInfo, prompt: Prompt, *, so_far: str = "") -> None:
        """Streams the reply the session has just opened; `so_far` is the text of a reply being continued."""
        self.chat_view.begin_reply(model.title or model.name)
        self.chat_view.append_reply(so_far)
        # A model's thinking is split off its answer (core/reasoning.py); a base model's text is all answer.
        self._splitter = ReasoningSplitter(starts_in_reasoning=model.replies_start_reasoning and not so_far)
        self._split_replies = model.has_chat_template
        self.sidebar.set_current(self.session.conversation_id)
        self._set_busy(True)
        self._pieces = 0
        self._save_timer.start()
        sampling = self.sampling()
        if self.token_button.isChecked():  # probabilities are asked for only then: off, the token view costs nothing
            sampling = replace(sampling, top_logprobs=ALTERNATIVES)
            self._show_tokens_of(self.session.reply.message_id if self.session.reply is not None else None, so_far)
        self.generate_requested.emit(model, prompt, sampling, self.chat_settings(model))

    def act_on_message(
        self, action: str, message_id: int, new_text: str = "", token: str = "", tokens: ReplyTokens | None = None
    ) -> None:
        """Edit (with `new_text`), regenerate or continue a message, branch a reply (with `new_text` its text before a
        token, `token` the alternative to put there, and `tokens` the branch's tokens so far for the token view), or
        show a message's previous or next version."""
        model = self.current_model()
        if self._busy or model is None:
            self.statusBar().showMessage("Stop the reply first, or wait for it to finish.", 5000)
            return
        settings = self.chat_settings(model)
        self._hide_banner()
        try:
            if action in ("previous", "next"):
                self.session.flip(message_id, -1 if action == "previous" else 1)
                self._show_current()
                self._show_stored_tokens()
                return
            so_far = ""
            if action == "edit":
                prompt = self.session.edit(message_id, new_text, model, settings)
            elif action == "regenerate":
                prompt = self.session.regenerate(message_id, model, settings)
            elif action == "branch":
                so_far = new_text + token
                prompt = self.session.branch_reply(message_id, new_text, token, model, settings, tokens=tokens)
            else:
                so_far = self.session.store.get_message(message_id).content
                prompt = self.session.continue_reply(message_id, model, settings)
        except AppError as error:
            self._show_error(str(error))
            return
        self._show_current(leave_out=message_id if action == "continue" else None)
        self._start_reply(model, prompt, so_far=so_far)

    def _show_tokens_of(self, message_id: int | None, so_far: str = "") -> None:
        """The token view shows the reply `message_id`, which starts with `so_far`, from now on (None: an empty
        view, till the next reply)."""
        self._token_reply = message_id
        stored = self.session.store.reply_tokens(message_id) if message_id is not None else None
        if stored is not None and stored.text == so_far:  # a reply continued, or a what-if branch: its tokens so far
            self.token_view.show_reply(stored)
        else:
            self.token_view.begin(so_far)

    def _show_stored_tokens(self) -> None:
        """The token view shows the last reply of the branch on show, with the probabilities kept with it."""
        conversation = self.session.conversation_id
        thread = self.session.store.thread(conversation) if conversation is not None else []
        reply = next((message for message in reversed(thread) if message.role == "assistant"), None)
        if reply is None:
            self._show_tokens_of(None)
            return
        self._token_reply = reply.id
        stored = self.session.store.reply_tokens(reply.id)
        if stored is None:
            self.token_view.show_note(NO_STORED_TOKENS)
        else:
            self.token_view.show_reply(stored)
        self.token_view.can_branch = stored is not None

    def _on_token_probabilities(self, tokens: list[TokenProbability]) -> None:
        self.token_view.append_tokens(tokens)
        self.session.append_tokens(tokens)  # kept with the reply, so a reopened conversation shows them

    def _what_if(self, position: int, choice: TokenChoice) -> None:
        """The reply in the token view, continued from `choice` in place of its token at `position`."""
        if self._token_reply is not None:
            before, tokens = self.token_view.text_before(position), self.token_view.branch_tokens(position, choice)
            self.act_on_message("branch", self._token_reply, before, choice.token, tokens)

    def _on_message_action(self, action: str, message_id: int) -> None:
        if action != "edit":
            self.act_on_message(action, message_id)
            return
        original = self.session.store.get_message(message_id).content
        text, accepted = QInputDialog.getMultiLineText(
            self, "Edit your message", "A new version, answered afresh (the old one stays, a click away):", original
        )
        if accepted and text.strip() and text.strip() != original.strip():
            self.act_on_message("edit", message_id, text.strip())

    def _show_current(self, *, leave_out: int | None = None) -> None:
        """The conversation on show, rendered again with each message's actions and versions; without the reply
        being written (it streams below) and without `leave_out` (a reply being continued)."""
        conversation = self.session.conversation_id
        if conversation is None:
            return
        writing = self.session.reply.message_id if self.session.reply is not None else None
        shown = [m for m in self.session.store.thread(conversation) if m.id not in (writing, leave_out)]
        model = self.current_model()
        self.chat_view.show_thread(
            shown,
            completion=model is not None and not model.has_chat_template,
            versions=self.session.store.versions(conversation),
            titles={known.name: known.title or known.name for known in self._models},
        )

    def chat_settings(self, model: ModelInfo) -> ChatSettings:
        """What this reply is generated with, stored with it so that it can be reproduced."""
        return self.settings_panel.settings(model.name)

    def new_conversation(self) -> None:
        if self._busy:
            self.statusBar().showMessage("Stop the reply first, or wait for it to finish.", 5000)
            return
        self.session.start_new()
        self.chat_view.clear()
        self._show_tokens_of(None)
        self.sidebar.set_current(None)
        self.prompt_box.setFocus()

    def open_conversation(self, conversation_id: int, message_id: int | None = None) -> None:
        """Shows a stored conversation (at `message_id`, for a search hit); the next message continues it."""
        if self._busy:
            self.statusBar().showMessage("Stop the reply first, or wait for it to finish.", 5000)
            return
        try:
            self.session.open(conversation_id)
        except AppError as error:
            self._show_error(str(error))
            return
        settings = self.session.store.get(conversation_id).settings
        if settings.layout == SIDE_BY_SIDE:  # shown again as it was made, in two panes
            self.open_side_by_side(conversation_id)
            return
        self.settings_panel.show_settings(settings)
        self._use_model_of(settings)
        self._show_current()
        self._show_stored_tokens()
        if message_id is not None:
            self.chat_view.show_message(message_id)
        self.sidebar.set_current(conversation_id)

    def set_ui_scale(self, scale: float) -> None:
        """Text size for the whole window (Ctrl+plus, Ctrl+minus, Ctrl+0): big enough for a projector, kept."""
        self._settings.ui_scale = round(min(MAX_SCALE, max(MIN_SCALE, scale)), 2)
        if not self.presenting:
            self._apply_scale(self._settings.ui_scale)

    def set_presenter_scale(self, scale: float) -> None:
        """Text size in presenter mode, kept apart from the everyday one: set once for the room, used every lesson."""
        self._settings.presenter_scale = round(min(PRESENTER_MAX_SCALE, max(PRESENTER_MIN_SCALE, scale)), 2)
        if self.presenting:
            self._apply_scale(self._settings.presenter_scale)

    def _apply_scale(self, scale: float) -> None:
        app = QApplication.instance()
        assert app is not None
        base = app.property(BASE_POINT_SIZE)  # the size before any scaling, kept on the application itself
        if not isinstance(base, float):
            base = QApplication.font().pointSizeF()
            app.setProperty(BASE_POINT_SIZE, base)
        font = QApplication.font()
        font.setPointSizeF(base * scale)
        QApplication.setFont(font)
        # A widget styled by a style sheet keeps the font it had when the sheet was applied (the error banner's text
        # did, and presenter mode's whole window would): deliver the new font now, then apply each sheet again.
        QApplication.sendPostedEvents(None, QEvent.Type.ApplicationFontChange)
        for widget in (self, *self.findChildren(QWidget)):
            if widget.styleSheet():
                widget.setStyleSheet(widget.styleSheet())
        self.prompt_box.setFixedHeight(QFontMetrics(font).lineSpacing() * 4 + 12)  # four lines at any size

    def _zoom(self, step: float | None) -> None:
        """Ctrl+plus and Ctrl+minus change the text size in use, Ctrl+0 (`step` None) resets it."""
        if self.presenting:
            self.set_presenter_scale(DEFAULT_PRESENTER_SCALE if step is None else self._settings.presenter_scale + step)
        else:
            self.set_ui_scale(1.0 if step is None else self._settings.ui_scale + step)

    # -- presenter mode --------------------------------------------------------------------------------------------

    @property
    def presenting(self) -> bool:
        return self._presenting is not None

    def set_presenting(self, on: bool) -> None:
        """Presenter mode (F5): full screen, the presenter text size, high contrast, only the chat, the model picker
        and a big Stop; leaving it puts back the window's state, panels and text size as they were."""
        if on == self.presenting:
            return
        if on:
            panels: list[QWidget] = [self.sidebar, self.settings_panel, self.library_panel, self.hardware_panel]
            optional = (self.discover_panel, self.local_api_panel, self.evaluate_panel)
            panels += [panel for panel in optional if panel is not None]
            controls: list[QWidget] = [self.library_button, self.remote_button, self.hardware_button]
            controls += [self.discover_button, self.local_api_button, self.evaluate_button, self.settings_button]
            controls.append(self.load_label)
            self._presenting = _Layout(
                window_state=self.windowState(),
                geometry=self.geometry(),
                hidden=[widget for widget in panels + controls if not widget.isHidden()],
                splitter_sizes=[(splitter, splitter.sizes()) for splitter in (self._columns, self._panels)],
                style_sheet=self.styleSheet(),
            )
            for widget in self._presenting.hidden:
                widget.hide()
            dark = self.palette().color(QPalette.ColorRole.Base).lightnessF() < 0.5
            self.setStyleSheet(presenter_style(dark))
            self._apply_scale(self._settings.presenter_scale)
            self.showFullScreen()
        else:
            layout, self._presenting = self._presenting, None
            assert layout is not None
            self.setStyleSheet(layout.style_sheet)
            self._apply_scale(self._settings.ui_scale)
            for widget in layout.hidden:
                widget.show()
            # By hand, not restoreGeometry(): that one also shrinks a window to fit the screen it last saw.
            self.setWindowState(layout.window_state)
            if not layout.window_state & Qt.WindowState.WindowMaximized:
                self.setGeometry(layout.geometry)
            for splitter, sizes in layout.splitter_sizes:
                splitter.setSizes(sizes)
        self.present_button.setChecked(on)  # when F5 or Esc, not the button, changed the mode
        if self.side_by_side is not None and self.side_by_side.isVisible():
            self.side_by_side.set_presenting(on)
        self._escape_leaves.setEnabled(on and not self._busy)

    def _use_model_of(self, settings: ChatSettings) -> None:
        """A reopened conversation goes on with the model it used, when the library still has it."""
        if settings.model is None or settings.model == getattr(self.current_model(), "name", None):
            return
        index = self.model_picker.findData(settings.model)
        if index >= 0:
            self.model_picker.setCurrentIndex(index)
        else:
            self.statusBar().showMessage(
                f"This conversation used {settings.model}, which is not in the library; the chosen model answers.",
                10000,
            )

    def _on_conversation_deleted(self, conversation_id: int) -> None:
        if conversation_id == self.session.conversation_id and not self._busy:
            self.new_conversation()

    def _recover_conversations(self) -> None:
        damaged = self.session.store.quarantined
        if damaged is None:
            return
        try:
            count = self.session.store.recover_from(damaged)
        except AppError as error:
            self._show_error(str(error))
            return
        self._hide_banner()
        self.sidebar.refresh()
        self.statusBar().showMessage(f"Recovered {count} messages from {damaged}.", 10000)

    def stop(self) -> None:
        self.worker.request_stop()

    def _on_loading(self, name: str) -> None:
        self.statusBar().showMessage(f"Loading {name}…")

    def _on_loaded(self, name: str) -> None:
        self.statusBar().showMessage(f"{name} is ready.", 5000)

    def _on_delta(self, text: str) -> None:
        self._pieces += 1
        if not self._context_timer.isActive():
            self._context_timer.start()
        self.chat_view.append_pieces(
            self._splitter.feed(text) if self._split_replies else [("answer", text)], self.session
        )

    def _show_context_so_far(self) -> None:
        if self._busy:  # a piece is a token or a few: the count is exact once the reply ends
            self._show_context(self._context[0] + self._pieces)

    def _on_context_measured(self, prompt_tokens: int, context: int) -> None:
        self._context = (prompt_tokens, context)
        self._show_context(prompt_tokens)

    def _show_context(self, used: int) -> None:
        """The gauge: how full the context is with the prompt and the reply so far."""
        context = self._context[1]
        if not context:  # not measured: a remote server that cannot count tokens
            self.context_gauge.hide()
            self.context_label.clear()
            return
        self.context_gauge.setRange(0, context)
        self.context_gauge.setValue(min(used, context))
        self.context_gauge.show()
        policy = self.settings_panel.settings(None).context_policy
        when_full = "the oldest turns are left out" if policy == DROP_OLDEST else "nothing more is sent"
        self.context_label.setText(
            f"Context {used:,} of {context:,} tokens ({100 * used / context:.0f} %) · when full, {when_full}"
        )
        conversation = self.session.conversation_id
        if used >= NEARLY_FULL * context and conversation not in self._warned_nearly_full:
            self._warned_nearly_full.add(conversation)  # said once per conversation, before anything is left out
            then = "its oldest turns will be left out of what the model reads (the system prompt stays)"
            self._show_error(
                f"This conversation fills {100 * used / context:.0f} % of the model's context. When it is full, "
                f"{then if policy == DROP_OLDEST else 'nothing more will be sent until you start a new chat'}. "
                "Settings → When the context is full changes this."
            )

    def _on_context_trimmed(self, left_out: int) -> None:
        self._show_error(
            f"The {left_out} oldest messages were left out of what the model reads, to fit its "
            f"{self._context[1]:,}-token context. The system prompt stays, and the whole conversation is kept. "
            "Settings can make the app stop instead."
        )

    def _on_context_full(self, message: str) -> None:
        not_sent = "Not sent: the conversation does not fit in the context."
        self._end_reply(not_sent)
        self._save_reply(lambda: self.session.interrupt(not_sent))
        self._show_error(message)

    def _on_finished(self, stats: dict[str, object]) -> None:
        completion = stats.get("completion_tokens")
        self._show_context(self._context[0] + (completion if isinstance(completion, int) else self._pieces))
        kept = {**stats, "pieces": self._pieces}
        note = reply_note(kept, "complete")
        self.stats_label.setText(note)
        self._end_reply(note)
        self._save_reply(lambda: self.session.finish(kept))
        notes = stats.get("notes")
        if isinstance(notes, list) and notes:
            self._show_error(" ".join(str(item) for item in notes))

    def _on_failed(self, message: str) -> None:
        why = f"Interrupted: {message}" if message else "Interrupted."
        self._end_reply(why)
        self._save_reply(lambda: self.session.interrupt(why))
        model = self.current_model()
        then = "tries the server again" if model is not None and model.server else "starts a fresh engine"
        self._show_error(f"{message} Your conversation is kept; the next message {then}.")

    def _end_reply(self, note: str) -> None:
        if self._split_replies:
            self.chat_view.append_pieces(self._splitter.finish(), self.session)
        self.chat_view.end_reply(note)
        self.token_view.can_branch = self._token_reply is not None  # saved: a what-if can start from it now
        self._save_timer.stop()
        self._set_busy(False)

    def _save_reply(self, save: Callable[[], None]) -> None:
        if self._closed:  # a reply's last signals can still arrive after the window closed the store
            return
        try:
            save()
        except AppError as error:
            self._show_error(f"The reply could not be saved: {error}")
        self.sidebar.refresh()
        self._show_current()  # as stored, now with the reply's actions (Regenerate, Continue, versions)

    def _show_error(self, message: str, *, can_insist: bool = False) -> None:
        self.error_banner.setText(message)
        self.insist_button.setVisible(can_insist)
        self.banner.show()
        self.statusBar().clearMessage()

    def _hide_banner(self) -> None:
        self.banner.hide()
        self.insist_button.hide()
        self.recover_button.hide()

    def _on_refused(self, message: str) -> None:
        if self._busy:
            not_sent = "Not sent: the model would not fit."
            self._end_reply(not_sent)
            self._save_reply(lambda: self.session.interrupt(not_sent))
        self.load_label.setText("not loaded")
        self._show_error(message, can_insist=True)

    def _insist(self) -> None:
        model = self.current_model()
        self._hide_banner()
        if model is not None:
            self.load_requested.emit(model, True)

    def _on_planned(self, plan: LoadPlan | None) -> None:
        # The first load measured the bandwidth that forecasts need.
        self.library_panel.refresh_advice()
        if self.discover_panel is not None:
            self.discover_panel.refresh_forecasts()
        if plan is None:
            self.load_label.setText("")
            return
        where = f"{plan.gpu_layers} GPU layers" if plan.gpu_layers else "CPU"
        self.load_label.setText(f"Context {plan.context:,} · {plan.threads} threads · {where} · {plan.verdict.level}")
        self.load_label.setToolTip("\n".join([f"{plan.verdict.sentence}.", *plan.reasons]))
        if plan.warnings:
            self._show_error(" ".join(plan.warnings))

    def _toggle_hardware(self, visible: bool) -> None:
        self.hardware_panel.setVisible(visible)
        if visible:
            self.hardware_panel.refresh()

    # -- estimates (run off the GUI thread) ----------------------------------------------------------------------

    def _toggle_discover(self, visible: bool) -> None:
        self._discover().setVisible(visible)

    def _discover(self) -> DiscoverPanel:
        if self.discover_panel is None:
            from localai_app.core.downloads import DownloadManager
            from localai_app.core.hub import Hub, endpoint_from
            from localai_app.ui.discover_panel import DiscoverPanel

            def hub() -> Hub:
                return Hub(endpoint_from(self._settings.hub_endpoint))

            def assess_repository(client: Hub, details: RepoDetails) -> Assessment:
                machine = hardware.detect(cache_dir=self._paths.cache)
                return assess(client, details, machine, self._paths, self.engine_manager.overrides, measure=False)

            def reassess(assessment: Assessment) -> Assessment:
                machine = hardware.detect(cache_dir=self._paths.cache)
                return assessment.redone(machine, self._paths, self.engine_manager.overrides, measure=False)

            def free_memory() -> int:
                machine = hardware.detect(with_build=False)
                discrete = [gpu.free_bytes or 0 for gpu in machine.gpus if not gpu.unified_memory]
                return machine.available_ram_bytes + sum(discrete)

            panel = DiscoverPanel(
                hub_factory=hub,
                assess_repository=assess_repository,
                reassess=reassess,
                downloads_for=lambda listener: DownloadManager(self._paths, hub, listener=listener),
                free_memory=free_memory,
                endpoint_setting=lambda: self._settings.hub_endpoint,
            )
            panel.hide()
            panel.model_downloaded.connect(lambda _: self.library_panel.refresh())
            panel.endpoint_changed.connect(self._set_hub_endpoint)
            panel.message.connect(lambda text: self.statusBar().showMessage(text, 10000))
            panel.show_catalog()
            self._panels.addWidget(panel)
            self.discover_panel = panel
        return self.discover_panel

    def _toggle_local_api(self, visible: bool) -> None:
        self._local_api().setVisible(visible)

    def _local_api(self) -> LocalApiPanel:
        if self.local_api_panel is None:
            from localai_app.core.credentials import Credentials
            from localai_app.ui.local_api_panel import LocalApiPanel

            panel = LocalApiPanel(
                self._settings.local_api,
                Credentials(self._paths.config),
                save=lambda: save_settings(self._paths.config, self._settings),
                current_model=self.current_model,
            )
            panel.hide()
            panel.serve_requested.connect(self.worker.serve)  # queued: the worker sets options between loads
            self.worker.serving.connect(panel.show_serving)
            self.worker.load_failed.connect(panel.show_failure)
            self.worker.refused.connect(panel.show_failure)
            panel.message.connect(lambda text: self.statusBar().showMessage(text, 10000))
            # Called on the engine's reader thread: the signal carries each record to the GUI thread.
            self.engine_manager.on_request = panel.request_seen.emit
            self._panels.addWidget(panel)
            self.local_api_panel = panel
        return self.local_api_panel

    def _toggle_evaluate(self, visible: bool) -> None:
        panel = self._evaluate()
        panel.setVisible(visible)
        if visible:  # its results table, charts and cost need the height more than the chat does meanwhile
            sizes = self._panels.sizes()
            chat = min(sizes[0], sum(sizes) // 5)
            sizes[self._panels.indexOf(panel)] += sizes[0] - chat
            sizes[0] = chat
            self._panels.setSizes(sizes)

    def _evaluate(self) -> EvaluatePanel:
        if self.evaluate_panel is None:
            from localai_app.ui.evaluate_panel import EvaluatePanel

            panel = EvaluatePanel(self._library, self._paths)
            panel.hide()
            panel.set_models(self._local_models or [])
            self.library_panel.models_changed.connect(panel.set_models)
            panel.message.connect(lambda text: self.statusBar().showMessage(text, 10000))
            self._panels.addWidget(panel)
            self.evaluate_panel = panel
        return self.evaluate_panel

    def _set_hub_endpoint(self, endpoint: str | None) -> None:
        self._settings.hub_endpoint = endpoint
        save_settings(self._paths.config, self._settings)

    def _survey(self, model: ModelInfo | None) -> tuple[Hardware, Advice | None]:
        machine = hardware.detect(cache_dir=self._paths.cache)
        if model is None or model.shape is None:
            return machine, None
        return machine, self._advise({model.name: model.shape}, machine)[model.name]

    def _advise_all(self, models: list[ModelInfo]) -> dict[str, Advice]:
        shapes = {model.name: model.shape for model in models if model.shape is not None}
        return self._advise(shapes, hardware.detect(cache_dir=self._paths.cache))

    def _advise(self, shapes: dict[str, ModelShape], machine: Hardware) -> dict[str, Advice]:
        # measure=False: the bandwidth probe runs before the first load, never while an engine generates.
        return advise_here(
            shapes,
            machine,
            self._paths,
            self.engine_manager.overrides,
            measure=False,
            reclaimable_ram=self.engine_manager.engine_resident_bytes(),
        )

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.send_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        self._escape_leaves.setEnabled(self.presenting and not busy)
        self.model_picker.setEnabled(not busy)

    # -- lifetime ----------------------------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            # First frame first: the library scan, and the model preload it triggers (a child process competing
            # for the CPU), start once the window is on screen. Measured: up to 80 ms sooner to the first paint.
            QTimer.singleShot(0, self.library_panel.refresh)
            QTimer.singleShot(0, self.refresh_remote_models)
            from localai_app.core.downloads import unfinished  # the download machinery loads after the first frame

            if unfinished(self._paths):  # downloads interrupted by quitting or a crash go on
                QTimer.singleShot(0, self._discover)

    def closeEvent(self, event: QCloseEvent) -> None:
        # The presenter text size is the application's font: left set, it would carry over to dialogs and any
        # window opened after this one.
        self.set_presenting(False)
        self._settings.sampling.temperature = self.temperature.value()
        self._settings.sampling.max_tokens = self.max_tokens.value()
        self._settings.sampling.seed = self.sampling().seed
        save_settings(self._paths.config, self._settings)
        if self.discover_panel is not None:
            self.discover_panel.shutdown()  # partial downloads stay on disk and resume at the next start
        if self.tokenizer_playground is not None:
            self.tokenizer_playground.shutdown()  # its comparison model's engine
        if self.evaluate_panel is not None:
            self.evaluate_panel.shutdown()  # a running benchmark stops its engine
        if self.side_by_side is not None:
            self.side_by_side.shutdown()  # its two engines; a reply cut short keeps its text
        self.worker.request_stop()
        self.engine_manager.shutdown()  # kills the engine, which also ends a stream the worker may be reading
        self._thread.quit()
        self._thread.wait(10_000)
        self.worker.shutdown()  # its thread has ended: now also the connection to a remote server can close
        self._save_reply(self.session.interrupt)  # a reply cut short by closing keeps its text, marked as such
        self._closed = True
        self.session.store.close()
        super().closeEvent(event)
