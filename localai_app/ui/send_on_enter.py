"""The prompt box's keys, shared by the chat window and side by side."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QPushButton


class SendOnEnter(QObject):
    """Enter sends; Shift+Enter starts a new line, as in every chat app."""

    def __init__(self, send: QPushButton) -> None:
        super().__init__(send)
        self._send = send

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self._send.click()
                return True
        return False
