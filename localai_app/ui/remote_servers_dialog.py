"""Remote servers: list, add (name, address, optional API key, with a connection test) and remove the
OpenAI-compatible servers whose models the picker offers beside the local ones (core/remote.py)."""

from __future__ import annotations

from functools import partial

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.errors import AppError
from localai_app.core.remote import RemoteServers, key_sent_in_clear, probe
from localai_app.ui.background import run_in_background

INTRODUCTION = (
    "Chat with models running on other machines: any OpenAI-compatible server, such as llama.cpp's llama-server, "
    "vLLM, Ollama (http://host:11434/v1) or another localai-app. Their models appear in the model picker, and "
    "conversations with them are kept like any other."
)
CLEAR_TEXT_WARNING = (
    "This key would cross the network unencrypted (plain http to another machine), where anyone on the way can "
    "read it: use an https address if the server has one."
)
MODELS_SHOWN = 8  # a test on a server with dozens of models names the first few


class RemoteServersDialog(QDialog):
    changed = Signal()  # a server was added or removed: the picker lists the models again

    def __init__(self, servers: RemoteServers, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Remote servers")
        self._servers = servers
        introduction = QLabel(INTRODUCTION)
        introduction.setWordWrap(True)
        self.server_list = QListWidget()
        self.server_list.setAccessibleName("Remote servers")
        self.remove_button = QPushButton("Remove…")
        self.remove_button.setToolTip("Remove the selected server and forget its API key")
        list_buttons = QHBoxLayout()
        list_buttons.addStretch(1)
        list_buttons.addWidget(self.remove_button)
        closing = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        closing.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(introduction)
        layout.addWidget(self.server_list, 1)
        layout.addLayout(list_buttons)
        layout.addWidget(self._build_form())
        layout.addWidget(closing)
        self.resize(620, 480)

        self.url_edit.textChanged.connect(self._warn_about_key)
        self.key_edit.textChanged.connect(self._warn_about_key)
        self.test_button.clicked.connect(self.test_connection)
        self.add_button.clicked.connect(self.add_server)
        self.remove_button.clicked.connect(self._remove_selected)
        self.server_list.itemSelectionChanged.connect(self._update_buttons)
        self._show_servers()

    def _build_form(self) -> QGroupBox:
        """Name, address and key of a server to add, with Test connection and what it found."""
        self.name_edit = QLineEdit()
        self.name_edit.setAccessibleName("Server name")
        self.name_edit.setPlaceholderText("a name you choose, such as gpu-box")
        self.url_edit = QLineEdit()
        self.url_edit.setAccessibleName("Server address")
        self.url_edit.setPlaceholderText("http://192.168.1.20:8080")
        self.key_edit = QLineEdit()
        self.key_edit.setAccessibleName("API key")
        self.key_edit.setPlaceholderText("optional")
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_warning = QLabel(CLEAR_TEXT_WARNING)
        self.key_warning.setWordWrap(True)
        self.key_warning.setStyleSheet("color: #8a5a00;")
        self.key_warning.hide()
        self.test_button = QPushButton("Test connection")
        self.test_button.setToolTip("List the models this server offers, or say why it cannot be reached")
        self.add_button = QPushButton("Add server")
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form = QFormLayout()
        form.addRow("Name:", self.name_edit)
        form.addRow("Address:", self.url_edit)
        form.addRow("API key:", self.key_edit)
        form.addRow(self.key_warning)
        add_buttons = QHBoxLayout()
        add_buttons.addStretch(1)
        add_buttons.addWidget(self.test_button)
        add_buttons.addWidget(self.add_button)
        form.addRow(add_buttons)
        form.addRow(self.result_label)
        adding = QGroupBox("Add a server")
        adding.setLayout(form)
        return adding

    def _show_servers(self) -> None:
        self.server_list.clear()
        for server in self._servers.servers():
            key = "API key set" if self._servers.api_key(server) else "no API key"
            item = QListWidgetItem(f"{server.name}  ·  {server.url}  ·  {key}")
            item.setData(Qt.ItemDataRole.UserRole, server.name)
            self.server_list.addItem(item)
        if not self.server_list.count():
            self.server_list.addItem(QListWidgetItem("No servers yet: add one below."))
            self.server_list.item(0).setFlags(Qt.ItemFlag.NoItemFlags)
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(bool(self.server_list.selectedItems()))

    def _warn_about_key(self) -> None:
        self.key_warning.setVisible(key_sent_in_clear(self.url_edit.text(), self.key_edit.text().strip()))

    def _say(self, text: str, *, colour: str = "") -> None:
        self.result_label.setText(text)
        self.result_label.setStyleSheet(f"color: {colour};" if colour else "")

    def test_connection(self) -> None:
        """Lists the server's models in the background; the answer (or why there is none) shows below."""
        self.test_button.setEnabled(False)
        self._say("Connecting…")
        run_in_background(
            self, partial(probe, self.url_edit.text(), self.key_edit.text()), self._show_offered, self._show_problem
        )

    def _show_offered(self, ids: list[str]) -> None:
        self.test_button.setEnabled(True)
        if not ids:
            self._say("Connected, but the server offers no models.", colour="#8a5a00")
            return
        named = ", ".join(ids[:MODELS_SHOWN]) + (
            f" and {len(ids) - MODELS_SHOWN} more" if len(ids) > MODELS_SHOWN else ""
        )
        self._say(f"Connected: it offers {len(ids)} model{'s' if len(ids) > 1 else ''}: {named}.", colour="#1b6e20")

    def _show_problem(self, message: str) -> None:
        self.test_button.setEnabled(True)
        self._say(message, colour="#7a1212")

    def add_server(self) -> None:
        try:
            server = self._servers.add(self.name_edit.text(), self.url_edit.text(), self.key_edit.text())
        except (AppError, OSError) as error:
            self._say(str(error), colour="#7a1212")
            return
        for edit in (self.name_edit, self.url_edit, self.key_edit):
            edit.clear()
        self._show_servers()
        self._say(f"Added {server.name}: its models appear in the model picker.", colour="#1b6e20")
        self.changed.emit()

    def _remove_selected(self) -> None:
        items = self.server_list.selectedItems()
        if not items:
            return
        name = str(items[0].data(Qt.ItemDataRole.UserRole))
        answer = QMessageBox.question(
            self,
            "Remove server",
            f"Remove {name}? Its API key is forgotten too; conversations with its models are kept.",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            self._servers.remove(name)
        except OSError as error:
            self._say(f"{name} could not be removed: {error}.", colour="#7a1212")
            return
        self._show_servers()
        self._say(f"Removed {name}.")
        self.changed.emit()
