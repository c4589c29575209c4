"""The conversation view. Tokens are buffered and flushed at most once per frame by appending at the end of
the document, so the cost per token stays flat however long the conversation grows (re-rendering everything
cost 57 ms per token here with 20 earlier messages).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget

from localai_app.core.conversations import Message

FRAME_MS = 16


def reply_note(stats: Mapping[str, Any] | None, state: str) -> str:
    """The small line under a reply: its speed, or how it ended early."""
    if state == "interrupted":
        return "Interrupted: the reply ended before the model finished it."
    if not stats:
        return ""
    if stats.get("stopped"):
        return f"Stopped after {stats.get('pieces', 0)} tokens."
    try:
        return (
            f"{stats['completion_tokens']} tokens · {float(stats['tokens_per_second']):.1f} tokens/s · "
            f"first token after {float(stats['ttft_ms']):.0f} ms"
        )
    except (KeyError, TypeError, ValueError):  # an imported conversation's stats may hold anything
        return ""


class ChatView(QTextBrowser):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)  # model text never navigates anywhere by itself
        self.setOpenExternalLinks(False)
        self.setPlaceholderText("Pick a model and write a message.")
        self._pending: list[str] = []
        self._reply_text: list[str] = []
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FRAME_MS)
        self._flush_timer.timeout.connect(self.flush)

    def show_thread(self, messages: Sequence[Message], *, completion: bool = False) -> None:
        """A stored conversation, built as one document: one pass, however many messages it has."""
        self._pending.clear()
        self._reply_text = []
        speakers = {"user": "Prompt (text completion)" if completion else "You", "system": "System prompt"}
        parts = []
        for message in messages:
            speaker = speakers.get(message.role) or message.model or "Assistant"
            css_class = "prompt" if completion and message.role == "user" else message.role
            body = html.escape(message.content).replace("\n", "<br>")
            parts.append(
                f'<p class="{css_class}"><a name="m{message.id}"></a><b>{html.escape(speaker)}</b><br>{body}</p>'
            )
            if message.role == "assistant" and (note := reply_note(message.stats, message.state)):
                parts.append(f'<p class="note"><small>{html.escape(note)}</small></p>')
        self.setHtml("".join(parts))
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def show_message(self, message_id: int) -> None:
        self.scrollToAnchor(f"m{message_id}")

    def add_turn(self, speaker: str, text: str, *, css_class: str) -> None:
        """A finished block of text: the user's message, or the prompt in completion mode."""
        self.flush()
        body = html.escape(text).replace("\n", "<br>")
        self._append_html(f'<p class="{css_class}"><b>{html.escape(speaker)}</b><br>{body}</p>')

    def begin_reply(self, speaker: str) -> None:
        self.flush()
        self._reply_text = []
        self._append_html(f'<p class="assistant"><b>{html.escape(speaker)}</b></p>')
        self._cursor_at_end().insertBlock(self._cursor_at_end().blockFormat(), QTextCharFormat())

    def append_reply(self, text: str) -> None:
        self._pending.append(text)
        self._reply_text.append(text)
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def end_reply(self, note: str) -> str:
        """Flush what is pending, add a small note under the reply, and return the reply's whole text."""
        self.flush()
        if note:
            self._append_html(f'<p class="note"><small>{html.escape(note)}</small></p>')
        return "".join(self._reply_text)

    def flush(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        at_bottom = self.verticalScrollBar().value() >= self.verticalScrollBar().maximum() - 4
        self._cursor_at_end().insertText(text, QTextCharFormat())
        if at_bottom:  # follow the reply only if the reader has not scrolled up to read something else
            self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def reply_so_far(self) -> str:
        return "".join(self._reply_text)

    def _cursor_at_end(self) -> QTextCursor:
        cursor = self.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _append_html(self, fragment: str) -> None:
        cursor = self._cursor_at_end()
        if not self.document().isEmpty():
            cursor.insertBlock()
        cursor.insertHtml(fragment)
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())
