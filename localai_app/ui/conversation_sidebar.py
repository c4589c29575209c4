"""The conversations list: newest first (pinned on top), new chat, rename, pin, delete with undo, and a search
over every message that opens the conversation a hit is in."""

from __future__ import annotations

import html
import json
from datetime import datetime
from functools import partial
from pathlib import Path

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.conversations import SIDE_BY_SIDE, Conversation, ConversationStore, SearchHit
from localai_app.core.errors import AppError

CONVERSATION_ROLE = Qt.ItemDataRole.UserRole
MESSAGE_ROLE = Qt.ItemDataRole.UserRole + 1
UNDO_SECONDS = 15  # how long "Undo" stays offered after a delete; the conversation stays in the bin after that
SEARCH_DELAY_MS = 200  # search once typing pauses, not at every key
EXPORT_FORMATS = {
    "md": ("Markdown", "Markdown (*.md)"),
    "html": ("web page", "Web page (*.html)"),
    "json": ("JSON", "JSON (*.json)"),
}


class ConversationSidebar(QWidget):
    opened = Signal(int, object)  # conversation id, and the message to show (a search hit) or None
    new_requested = Signal()
    deleted = Signal(int)
    message = Signal(str)  # what happened, for the status bar: an export written, an import that failed

    def __init__(self, store: ConversationStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self._current: int | None = None
        self._last_deleted: int | None = None
        self._build()
        self.new_button.clicked.connect(self.new_requested)
        self.import_button.clicked.connect(self._ask_import)
        self.search_box.textChanged.connect(lambda _: self._search_timer.start())
        self.list.itemActivated.connect(self._open)
        self.list.itemClicked.connect(self._open)
        self.list.customContextMenuRequested.connect(self._menu)
        self.undo_button.clicked.connect(self.undo_delete)

    def install_shortcuts(self, window: QWidget) -> None:
        """Ctrl+F searches the conversations and Ctrl+N starts a new one, wherever the focus is in `window`. They
        belong to the window, not the sidebar, because a hidden widget's shortcuts never fire (presenter mode)."""
        for key, action in (
            (QKeySequence.StandardKey.Find, self._find),
            (QKeySequence.StandardKey.New, self.new_requested.emit),
        ):
            QShortcut(QKeySequence(key), window).activated.connect(action)

    def _find(self) -> None:
        self.show()  # presenter mode hides the list; searching is how it comes back, to switch conversations
        self.search_box.setFocus()

    def _build(self) -> None:
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search all conversations")
        self.search_box.setAccessibleName("Search conversations")
        self.search_box.setClearButtonEnabled(True)
        self.new_button = QPushButton("New chat")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("A conversation exported as JSON, or an OpenAI-style messages array")
        self.list = QListWidget()
        self.list.setAccessibleName("Conversations")
        self.list.setWordWrap(True)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.undo_label = QLabel()
        self.undo_label.setWordWrap(True)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setAccessibleName("Undo delete")
        undo_row = QHBoxLayout()
        undo_row.setContentsMargins(0, 0, 0, 0)
        undo_row.addWidget(self.undo_label, 1)
        undo_row.addWidget(self.undo_button)
        self._undo = QWidget()
        self._undo.setLayout(undo_row)
        self._undo.hide()
        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.timeout.connect(self._undo.hide)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.refresh)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        buttons.addWidget(self.new_button, 1)
        buttons.addWidget(self.import_button)
        layout.addLayout(buttons)
        layout.addWidget(self.search_box)
        layout.addWidget(self.list, 1)
        layout.addWidget(self._undo)

    def set_current(self, conversation_id: int | None) -> None:
        self._current = conversation_id
        self.refresh()

    def refresh(self) -> None:
        """The conversations, or the search hits while the search box has text."""
        self.list.clear()
        query = self.search_box.text()
        if query.strip():
            hits = self._store.search(query)
            for hit in hits:
                self.list.addItem(self._hit_item(hit))
            if not hits:
                self.list.addItem(_note("No message matches."))
            return
        for conversation in self._store.list_conversations():
            item = self._conversation_item(conversation)
            self.list.addItem(item)
            if conversation.id == self._current:
                self.list.setCurrentItem(item)

    def rename(self, conversation_id: int, title: str) -> None:
        if title.strip():
            self._store.rename(conversation_id, title)
            self.refresh()

    def toggle_pin(self, conversation_id: int) -> None:
        self._store.set_pinned(conversation_id, not self._store.get(conversation_id).pinned)
        self.refresh()

    def delete(self, conversation_id: int) -> None:
        """Into the bin, with "Undo" offered for a while; the window moves on if it was the one on show."""
        title = self._store.get(conversation_id).title or "Untitled"
        self._store.delete(conversation_id)
        self._last_deleted = conversation_id
        self.undo_label.setText(f"Deleted “{title}”.")
        self._undo.show()
        self._undo_timer.start(UNDO_SECONDS * 1000)
        self.refresh()
        self.deleted.emit(conversation_id)

    def undo_delete(self) -> None:
        if self._last_deleted is not None:
            self._store.undo_delete(self._last_deleted)
            self.opened.emit(self._last_deleted, None)
            self._last_deleted = None
        self._undo.hide()
        self.refresh()

    def export_to(self, conversation_id: int | None, path: Path, extension: str) -> None:
        """One conversation as Markdown, HTML or JSON; with no id, all of them as one JSON file."""
        if conversation_id is None:
            text = json.dumps(self._store.export_all_json(), indent=2, ensure_ascii=False)
        elif extension == "json":
            text = json.dumps(self._store.export_json(conversation_id), indent=2, ensure_ascii=False)
        elif extension == "html":
            text = self._store.export_html(conversation_id)
        else:
            text = self._store.export_markdown(conversation_id)
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as error:
            self.message.emit(f"Could not write {path}: {error.strerror or error}.")
            return
        self.message.emit(f"Exported to {path}.")

    def import_from(self, path: Path) -> None:
        """Our own JSON export (one conversation or all), or an OpenAI-style list of messages; a file that is
        neither is refused with the reason and nothing is added."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            is_messages = isinstance(data, list) or (isinstance(data, dict) and "messages" in data)
            added = [self._store.import_openai_messages(data)] if is_messages else self._store.import_json(data)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            self.message.emit(f"Could not read {path.name}: {error}.")
            return
        except AppError as error:
            self.message.emit(f"{path.name} was not imported: {error}")
            return
        self.refresh()
        self.message.emit(f"Imported {len(added)} conversation{'s' if len(added) != 1 else ''} from {path.name}.")
        if added:
            self.opened.emit(added[0], None)

    def _ask_export(self, conversation_id: int, extension: str) -> None:
        title = self._store.get(conversation_id).title or "conversation"
        safe = "".join(character if character.isalnum() or character in " -_" else "_" for character in title)
        chosen, _ = QFileDialog.getSaveFileName(
            self, "Export conversation", f"{safe.strip() or 'conversation'}.{extension}", EXPORT_FORMATS[extension][1]
        )
        if chosen:
            self.export_to(conversation_id, Path(chosen), extension)

    def _ask_export_all(self) -> None:
        chosen, _ = QFileDialog.getSaveFileName(self, "Export all conversations", "conversations.json", "JSON (*.json)")
        if chosen:
            self.export_to(None, Path(chosen), "json")

    def _ask_import(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Import conversations", "", "JSON (*.json)")
        if chosen:
            self.import_from(Path(chosen))

    def _open(self, item: QListWidgetItem) -> None:
        conversation_id = item.data(CONVERSATION_ROLE)
        if conversation_id is not None:
            self.opened.emit(int(conversation_id), item.data(MESSAGE_ROLE))

    def _menu(self, position: QPoint) -> None:
        item = self.list.itemAt(position)
        if item is None or item.data(CONVERSATION_ROLE) is None or item.data(MESSAGE_ROLE) is not None:
            return
        conversation_id = int(item.data(CONVERSATION_ROLE))
        pinned = self._store.get(conversation_id).pinned
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self._ask_rename(conversation_id))
        menu.addAction("Unpin" if pinned else "Pin to the top", lambda: self.toggle_pin(conversation_id))
        for extension, (name, _) in EXPORT_FORMATS.items():
            menu.addAction(f"Export as {name}…", partial(self._ask_export, conversation_id, extension))
        menu.addAction("Export all conversations as JSON…", self._ask_export_all)
        menu.addSeparator()
        menu.addAction("Delete", lambda: self.delete(conversation_id))
        menu.exec(self.list.viewport().mapToGlobal(position))

    def _ask_rename(self, conversation_id: int) -> None:
        title, accepted = QInputDialog.getText(
            self, "Rename conversation", "Title:", text=self._store.get(conversation_id).title
        )
        if accepted:
            self.rename(conversation_id, title)

    @staticmethod
    def _conversation_item(conversation: Conversation) -> QListWidgetItem:
        when = datetime.fromtimestamp(conversation.updated_at).strftime("%d %b %H:%M")
        # Words and weight, not an emoji: many Linux desktops have no emoji font and would show a box.
        pinned = "pinned · " if conversation.pinned else ""
        layout = "side by side · " if conversation.settings.layout == SIDE_BY_SIDE else ""  # opens in two panes
        item = QListWidgetItem(f"{conversation.title or 'Untitled'}\n{pinned}{layout}{when}")
        if conversation.pinned:
            font = item.font()
            font.setBold(True)
            item.setFont(font)
        item.setData(CONVERSATION_ROLE, conversation.id)
        item.setToolTip(conversation.title)
        return item

    @staticmethod
    def _hit_item(hit: SearchHit) -> QListWidgetItem:
        # Plain text in the list (model text is never markup); the match is shown with «…» around it.
        item = QListWidgetItem(f"{hit.title or 'Untitled'}\n{hit.marked('«', '»')}")
        item.setData(CONVERSATION_ROLE, hit.conversation_id)
        item.setData(MESSAGE_ROLE, hit.message_id)
        item.setToolTip(hit.marked("<b>", "</b>", html.escape))
        return item


def _note(text: str) -> QListWidgetItem:
    item = QListWidgetItem(text)
    item.setFlags(Qt.ItemFlag.NoItemFlags)
    return item
