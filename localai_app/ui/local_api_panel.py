"""The Local API panel: serve the loaded model to other programs through the OpenAI API (core/serving.py).

Off by default and on loopback by default; another address needs a key. The engine serves it: this panel only
asks the engine worker to (re)load with these options, shows where it serves, snippets to call it and the requests
it answered. Settings persist at once; the key goes to credentials.json, never settings.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.credentials import Credentials
from localai_app.core.errors import AppError
from localai_app.core.library import ModelInfo
from localai_app.core.serving import (
    API_KEY_CREDENTIAL,
    RequestRecord,
    ServeOptions,
    check_origin,
    new_api_key,
    snippets,
)
from localai_app.core.settings import LocalApi

ADDRESSES = (("This computer only", "127.0.0.1"), ("Other computers on the network", "0.0.0.0"))
LOG_COLUMNS = ("Time", "Client", "Request", "Status", "Tokens in", "Tokens out", "Duration (ms)")
MAX_LOG_ROWS = 500  # the oldest rows go first: a busy API must not grow the window's memory without end
APPLY_DELAY_MS = 800  # a port typed digit by digit, or spun with the arrows, restarts serving once, not per step
OK_COLOUR, ERROR_COLOUR, WARNING_COLOUR = "#1b6e20", "#a31515", "#8a5a00"
EXPOSED_WARNING = (
    "Other computers on your network can use this model with the key, and what they send and receive travels "
    "unencrypted (plain HTTP). Choose this only on a network you trust, and give the key only to people you trust."
)


def _monospace(widget: QWidget) -> None:
    """Only the family is set, so the size still follows the window's text scale (Ctrl+plus)."""
    font = QFont()
    font.setFamilies([QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()])
    font.setStyleHint(QFont.StyleHint.Monospace)
    widget.setFont(font)


def _model_id(model: ModelInfo | None) -> str:
    """The name clients send as `model`: the engine lists the model under its library name (/v1/models)."""
    return model.name if model is not None and not model.server else "MODEL"


class LocalApiPanel(QWidget):
    serve_requested = Signal(object, object)  # ModelInfo | None, ServeOptions | None (stop serving)
    request_seen = Signal(object)  # RequestRecord; emitted on the engine's reader thread, so always queued here
    message = Signal(str)  # one sentence for the status line

    def __init__(
        self,
        settings: LocalApi,
        credentials: Credentials,
        *,
        save: Callable[[], None],
        current_model: Callable[[], ModelInfo | None],
        parent: QWidget | None = None,
    ) -> None:
        """`settings` is changed in place and `save` persists it; `current_model` is the window's chosen one."""
        super().__init__(parent)
        self._settings = settings
        self._credentials = credentials
        self._save = save
        self._current_model = current_model
        self._key = credentials.get(API_KEY_CREDENTIAL)
        self._requested: ServeOptions | None = None  # what serving was last asked to use; None: off
        self._loaded_model: ModelInfo | None = None  # the engine's latest load: the model the snippets name
        self._apply_timer = QTimer(self)
        self._apply_timer.setSingleShot(True)
        self._apply_timer.setInterval(APPLY_DELAY_MS)
        self._apply_timer.timeout.connect(self._apply)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._build_switch_row())
        middle = QHBoxLayout()
        middle.addLayout(self._build_form(), 1)
        middle.addLayout(self._build_snippets(), 1)
        layout.addLayout(middle)
        layout.addLayout(self._build_log(), 1)
        self.request_seen.connect(self.add_request)
        self._show_options()

    # -- building ------------------------------------------------------------------------------------------------

    def _build_switch_row(self) -> QHBoxLayout:
        self.switch = QCheckBox("Serve the loaded model to other programs")
        self.switch.setToolTip("An OpenAI-compatible API: the openai clients, LangChain and editors can call it")
        self.switch.toggled.connect(self._on_switch)
        self.status = QLabel()
        self.status.setObjectName("localApiStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.addWidget(self.switch)
        row.addWidget(self.status, 1)
        return row

    def _build_form(self) -> QVBoxLayout:
        self.address = QComboBox()
        self.address.setAccessibleName("Address")
        for label, host in ADDRESSES:
            self.address.addItem(f"{label} ({host})", host)
        if self.address.findData(self._settings.host) < 0:  # set outside the panel (settings.json, `serve --host`)
            self.address.addItem(self._settings.host, self._settings.host)
        self.address.setCurrentIndex(self.address.findData(self._settings.host))
        self.address.currentIndexChanged.connect(self._apply)
        self.port = QSpinBox()
        self.port.setAccessibleName("Port")
        self.port.setRange(1, 65535)
        self.port.setValue(self._settings.port)
        self.max_queue = QSpinBox()
        self.max_queue.setAccessibleName("Queue limit")
        self.max_queue.setToolTip("Requests that may wait behind the one being answered; more get 429, try later")
        self.max_queue.setRange(0, 1000)
        self.max_queue.setValue(self._settings.max_queue)
        for spin in (self.port, self.max_queue):
            spin.valueChanged.connect(self._apply_soon)
            spin.editingFinished.connect(self._apply)
        port_row = QHBoxLayout()
        port_row.addWidget(self.port)
        port_row.addWidget(QLabel("Queue limit:"))
        port_row.addWidget(self.max_queue)
        port_row.addStretch(1)
        self.warning = QLabel(EXPOSED_WARNING)
        self.warning.setObjectName("exposedWarning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(f"color: {WARNING_COLOUR}; font-weight: bold;")

        self.origins = QLineEdit(", ".join(self._settings.allowed_origins))
        self.origins.setAccessibleName("Allowed origins")
        self.origins.setPlaceholderText("none: browsers' pages cannot call it")
        self.origins.setToolTip(
            "Web pages (CORS origins) whose scripts may call the API from a browser, comma separated: "
            "https://example.com, http://localhost:3000"
        )
        self.origins.textEdited.connect(self._apply_soon)
        self.origins.editingFinished.connect(self._apply)

        form = QFormLayout()
        form.addRow("Address:", self.address)
        form.addRow(self.warning)
        form.addRow("Port:", port_row)
        form.addRow("Allowed origins:", self.origins)
        form.addRow("API key:", self._build_key_rows())
        column = QVBoxLayout()  # rows at the top, not spread over the height the snippet takes
        column.addLayout(form)
        column.addStretch(1)
        return column

    def _build_key_rows(self) -> QVBoxLayout:
        self.key = QLineEdit()
        self.key.setAccessibleName("API key")
        self.key.setReadOnly(True)
        self.key.setPlaceholderText("No key: any program on this computer can call it")
        _monospace(self.key)
        self.copy_key_button = QPushButton("Copy")
        self.copy_key_button.setToolTip("Copy the API key")
        self.copy_key_button.clicked.connect(self._copy_key)
        self.generate_key_button = QPushButton("Generate new")
        self.generate_key_button.setToolTip("A new random key; programs using the old one must be given the new one")
        self.generate_key_button.clicked.connect(self.generate_key)
        self.remove_key_button = QPushButton("Remove")
        self.remove_key_button.setToolTip("Forget the key: allowed only while serving to this computer only")
        self.remove_key_button.clicked.connect(self.remove_key)
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_key_button)
        buttons.addWidget(self.generate_key_button)
        buttons.addWidget(self.remove_key_button)
        buttons.addStretch(1)
        key_rows = QVBoxLayout()  # the key on a line of its own: it is long, and read whole
        key_rows.addWidget(self.key)
        key_rows.addLayout(buttons)
        return key_rows

    def _build_snippets(self) -> QVBoxLayout:
        self.language = QComboBox()
        self.language.setAccessibleName("Snippet language")
        self.language.addItems(["curl", "Python", "JavaScript"])
        self.language.currentIndexChanged.connect(self._show_snippet)
        self.copy_snippet_button = QPushButton("Copy")
        self.copy_snippet_button.setToolTip("Copy the snippet")
        self.copy_snippet_button.clicked.connect(self._copy_snippet)
        self.snippet = QPlainTextEdit()
        self.snippet.setAccessibleName("Snippet")
        self.snippet.setReadOnly(True)
        self.snippet.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        _monospace(self.snippet)
        row = QHBoxLayout()
        row.addWidget(QLabel("Call it from:"))
        row.addWidget(self.language)
        row.addStretch(1)
        row.addWidget(self.copy_snippet_button)
        column = QVBoxLayout()
        column.addLayout(row)
        column.addWidget(self.snippet, 1)
        return column

    def _build_log(self) -> QVBoxLayout:
        self.log = QTableWidget(0, len(LOG_COLUMNS))
        self.log.setAccessibleName("Requests")
        self.log.setHorizontalHeaderLabels(LOG_COLUMNS)
        self.log.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.log.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.log.verticalHeader().hide()
        self.log.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.log.horizontalHeader().setSectionResizeMode(LOG_COLUMNS.index("Request"), QHeaderView.ResizeMode.Stretch)
        self.clear_log_button = QPushButton("Clear")
        self.clear_log_button.setToolTip("Clear the request log")
        self.clear_log_button.clicked.connect(lambda: self.log.setRowCount(0))
        heading = QHBoxLayout()
        heading.addWidget(QLabel(f"Requests (the latest {MAX_LOG_ROWS}, newest at the bottom):"))
        heading.addStretch(1)
        heading.addWidget(self.clear_log_button)
        column = QVBoxLayout()
        column.addLayout(heading)
        column.addWidget(self.log, 1)
        return column

    # -- options -------------------------------------------------------------------------------------------------

    def options(self) -> ServeOptions:
        """What the controls say, not yet checked."""
        origins = tuple(part.strip() for part in self.origins.text().split(",") if part.strip())
        return ServeOptions(self.address.currentData(), self.port.value(), self._key, origins, self.max_queue.value())

    def _checked(self) -> ServeOptions:
        """The options to serve with, origins as browsers send them; an AppError says what is wrong."""
        options = self.options()
        return replace(options, allowed_origins=tuple(map(check_origin, options.allowed_origins))).check()

    def _apply_soon(self) -> None:
        # Not QTimer.start connected directly: PySide6 would pass the new value on as the timer's interval.
        self._apply_timer.start()

    def _apply(self) -> None:
        """Keep what the controls say, and serve with it now if serving."""
        self._apply_timer.stop()
        options = self.options()
        self._settings.host, self._settings.port = options.host, options.port
        self._settings.allowed_origins = list(options.allowed_origins)
        self._settings.max_queue = options.max_queue
        try:
            self._save()
        except OSError as error:
            self._say(f"The settings could not be saved: {error.strerror or error}.", ERROR_COLOUR)
            return
        self._show_options()
        if self.switch.isChecked():
            self._start()

    def _show_options(self) -> None:
        """The warning, the key and the snippets for the options as they stand; what is wrong with them, if any."""
        options = self.options()
        self.warning.setVisible(options.exposed)
        self.key.setText(self._key or "")
        self._show_snippet()
        if self._requested is None:
            try:
                self._checked()
            except AppError as error:
                self._say(str(error), ERROR_COLOUR)
            else:
                self._say("Off.", "")

    # -- serving -------------------------------------------------------------------------------------------------

    def _on_switch(self, on: bool) -> None:
        if on:
            self._start()
        else:
            self._requested = None
            self.serve_requested.emit(None, None)  # the engine restarts with its model, without the API
            self._show_options()

    def _start(self) -> None:
        model = self._current_model()
        if model is None:
            self._switch_off("Choose a model first: import or download one (Library, Discover), then turn this on.")
            return
        if model.server:
            self._switch_off(f"{model.name} runs on {model.server}: choose a model on this computer to serve it.")
            return
        try:
            options = self._checked()
        except AppError as error:
            if self._requested is None:
                self._switch_off(str(error))
            else:  # a mistake in a field does not stop the API already asked for
                self._say(f"{error} Serving goes on at {self._requested.base_url} as before.", ERROR_COLOUR)
            return
        if options == self._requested:
            return
        self._requested = options
        self._say(f"Starting the API at {options.base_url}…", "")
        self.serve_requested.emit(model, options)

    def _switch_off(self, why: str) -> None:
        self.switch.blockSignals(True)
        self.switch.setChecked(False)
        self.switch.blockSignals(False)
        self._say(why, ERROR_COLOUR)

    def show_serving(self, model: ModelInfo | None, url: str | None) -> None:
        """After each load (the window's model choice, or this panel's request): what the local engine serves now."""
        self._loaded_model = model or self._loaded_model
        if model is not None and url is not None:
            # A wildcard bind is shown as loopback (ServeOptions.display_host): say what other computers type.
            elsewhere = "; other computers use this computer's network address" if self.options().exposed else ""
            self._say(f"Serving {model.name} at {url}{elsewhere}", OK_COLOUR)
        elif self._requested is None:
            self._show_options()
        # Otherwise a load asked before serving was turned on has finished; the request to serve comes next.
        self._show_snippet()

    def show_failure(self, sentence: str) -> None:
        """A load failed (a port already in use, a model that will not load): serving is off until turned on."""
        if self._requested is None:
            return
        self._requested = None
        self._switch_off(f"Not serving: {sentence}")
        self.serve_requested.emit(None, None)  # the next load (a chat) starts the engine without the API

    # -- key -----------------------------------------------------------------------------------------------------

    def generate_key(self) -> None:
        self._store_key(new_api_key())

    def remove_key(self) -> None:
        if self.options().exposed:
            self._say(
                "Other computers may connect only with a key: choose “This computer only” before removing it.",
                ERROR_COLOUR,
            )
            return
        self._store_key(None)

    def _store_key(self, key: str | None) -> None:
        try:
            self._credentials.set(API_KEY_CREDENTIAL, key)
        except OSError as error:
            self._say(f"The key could not be saved ({self._credentials.path}: {error.strerror}).", ERROR_COLOUR)
            return
        self._key = key
        self._apply()

    def _copy_key(self) -> None:
        if not self._key:
            self.message.emit("There is no key to copy: Generate new makes one.")
            return
        QGuiApplication.clipboard().setText(self._key)
        self.message.emit("Copied the API key.")

    # -- snippets ------------------------------------------------------------------------------------------------

    def _show_snippet(self) -> None:
        model = self._loaded_model or self._current_model()
        options = self.options()
        chat = model is None or model.has_chat_template
        documents = snippets(options.base_url, options.api_key, _model_id(model), chat=chat)
        self.snippet.setPlainText(documents[self.language.currentText()])

    def _copy_snippet(self) -> None:
        QGuiApplication.clipboard().setText(self.snippet.toPlainText())
        self.message.emit(f"Copied the {self.language.currentText()} snippet.")

    # -- log -----------------------------------------------------------------------------------------------------

    def add_request(self, record: RequestRecord) -> None:
        scroll = self.log.verticalScrollBar()
        following = scroll.value() == scroll.maximum()  # keep up with new rows unless the user scrolled back
        if self.log.rowCount() >= MAX_LOG_ROWS:
            self.log.removeRow(0)
        row = self.log.rowCount()
        self.log.insertRow(row)
        values = (
            datetime.fromtimestamp(record.time).strftime("%H:%M:%S"),
            record.client,
            f"{record.method} {record.path}",
            str(record.status),
            str(record.prompt_tokens),
            str(record.completion_tokens),
            f"{record.duration_ms:,.0f}",
        )
        for column, value in enumerate(values):
            item = QTableWidgetItem(value)
            if column >= LOG_COLUMNS.index("Status"):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if column == LOG_COLUMNS.index("Status") and record.status >= 400:
                item.setForeground(QColor(ERROR_COLOUR))
            self.log.setItem(row, column, item)
        if following:
            self.log.scrollToBottom()

    def _say(self, text: str, colour: str) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {colour};" if colour else "")
