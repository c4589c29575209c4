"""The conversation view: replies as Markdown with highlighted, copyable code, reasoning folded under a "Thinking"
line, and updates cheap enough for the fastest engine.

Tokens are buffered and shown at most once per frame (FRAME_MS). A reply is cut into Markdown blocks as it streams
(markdown_blocks): a finished block is rendered once, and a flush re-renders only the block still being written,
at the end of the document, so an update costs what that block costs, however long the reply or the conversation
(re-rendering everything cost 57 ms per token with 20 earlier messages). Earlier messages are never touched while a
reply streams. A long stored conversation shows its newest messages first and renders the older ones above them in
slices between events.

Nothing here loads a resource: loadResource answers nothing, and images in model text become links to them. Links
open in the browser only when clicked, and only http and https ones. The user's own text is shown as written.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PySide6.QtCore import QTimer, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QFont,
    QGuiApplication,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextFrame,
)
from PySide6.QtWidgets import QTextBrowser, QWidget

from localai_app.core.conversations import Message
from localai_app.ui.markdown_blocks import Block, BlockSplitter, CodeBlock, TextBlock, split_blocks
from localai_app.ui.markdown_render import ACTION_SCHEME, Renderer, Theme

MESSAGE_ACTIONS = frozenset({"edit", "regenerate", "continue", "previous", "next"})
FRAME_MS = 16
# Opening a conversation renders this much of its end before the first paint (at least its last message).
FIRST_SCREEN_MESSAGES = 30
FIRST_SCREEN_CHARS = 12_000
LOAD_SLICE_MS = 5  # older messages are rendered in slices this long, so the window keeps answering meanwhile
SAFE_SCHEMES = ("http", "https")  # the only links handed to the browser
# Besides letters and digits, the characters that mean nothing in Markdown wherever they are (";" ends an entity,
# "." and ":" make autolinks, "-" "+" "=" "#" start lists, rules and headings, and so on).
_PLAIN = frozenset(" ,'\"?")
_PLAIN_CHECKED = 32  # characters before an appended piece compared with the end of the document


def reply_note(stats: Mapping[str, Any] | None, state: str) -> str:
    """The small line under a reply: its speed, or how it ended early."""
    if state == "interrupted":
        note = stats.get("note") if stats else None
        return note if isinstance(note, str) and note else "Interrupted: the reply ended before the model finished it."
    if not stats:
        return ""
    if stats.get("stopped"):
        return f"Stopped after {stats.get('pieces', 0)} tokens."
    if stats.get("stepped"):  # step mode's, token by token
        chosen = f", {stats.get('chosen_by_you')} chosen by you" if stats.get("chosen_by_you") else ""
        return f"{stats.get('completion_tokens', 0)} tokens stepped one at a time{chosen}"
    try:
        return (
            f"{stats['completion_tokens']} tokens · {float(stats['tokens_per_second']):.1f} tokens/s · "
            f"first token after {float(stats['ttft_ms']):.0f} ms"
        )
    except (KeyError, TypeError, ValueError):  # an imported conversation's stats may hold anything
        return ""


@dataclass
class _Reasoning:
    """A message's reasoning under its "Thinking" line: folded (out of the document) or unfolded."""

    marker: QTextCursor  # at the start of the Thinking line; Qt moves it along when text is added above
    text: str
    unfolded: bool
    streaming: bool  # still being written: the line says so rather than count words
    shown: int = 0  # characters of reasoning in the document after the line (0 while folded)


@dataclass
class _Reply:
    """The reply being streamed."""

    key: int
    markdown: bool  # False for a text completion, which continues the prompt and is shown as written
    header: QTextCursor  # at the start of the reply's header line
    blocks: BlockSplitter = field(default_factory=BlockSplitter)
    answer: list[str] = field(default_factory=list)
    unshown_answer: list[str] = field(default_factory=list)
    unshown_reasoning: list[str] = field(default_factory=list)
    reasoning: _Reasoning | None = None
    folded_by_reader: bool = False  # the reader clicked the Thinking line: the view no longer folds it
    started: bool = False  # some of the answer is in the document
    open_length: int = 0  # characters at the end of the document showing the block still being written
    open_code: int = 0  # ... when it is a code fence: how much of its code is shown (it only grows)
    open_frame: QTextFrame | None = None  # ... and the fence's frame, which more code is appended to


class ReplyKeeper(Protocol):
    """What saves a streaming reply as the view shows it (a chat session, a side of side by side)."""

    def append(self, text: str) -> None: ...

    def append_reasoning(self, text: str) -> None: ...


class ChatView(QTextBrowser):
    # What the reader asked of a stored message: "edit" (own messages), "regenerate", "continue" (the last reply),
    # "previous" or "next" (version); and the message's id.
    message_action = Signal(str, int)

    def __init__(self, parent: QWidget | None = None, *, message_actions: bool = True) -> None:
        """`message_actions`: offer Edit, Regenerate, Continue and ◀ ▶ under stored messages (not where nothing acts
        on them, as in a side-by-side pane, whose two replies are each other's versions)."""
        super().__init__(parent)
        self._message_actions = message_actions
        self.setOpenLinks(False)  # model text never navigates anywhere by itself
        self.setOpenExternalLinks(False)
        self.setPlaceholderText("Pick a model and write a message.")
        self.document().setUndoRedoEnabled(False)  # an undo record per token would only cost memory
        self.anchorClicked.connect(self._on_link)
        self._render = Renderer(Theme.from_palette(self.palette()))
        self._build_formats()
        self._keys = itertools.count(1)
        self._copies: dict[int, str] = {}  # Copy link -> the exact text it copies
        self._reasonings: dict[int, _Reasoning] = {}
        self._reply: _Reply | None = None
        self._last_answer = ""
        self._plain_replies = False  # the last turn was a completion prompt: its reply continues it as written
        self._older: deque[Message] = deque()  # of the conversation on show, not rendered yet; oldest first
        self._older_completion = False
        self._versions: Mapping[int, tuple[int, int]] = {}  # of the conversation on show: message id -> (which, of)
        self._last_message_id: int | None = None
        self._titles: Mapping[str, str] = {}
        self._older_cursor = QTextCursor()  # where the next of them goes: after those already rendered
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FRAME_MS)
        self._flush_timer.timeout.connect(self.flush)
        self._load_timer = QTimer(self)
        self._load_timer.setInterval(0)
        self._load_timer.timeout.connect(self._load_older)
        self._flatten_first_line()

    def _build_formats(self) -> None:
        self._header_block = QTextBlockFormat()
        self._header_block.setTopMargin(14)  # the space between messages
        self._header_block.setBottomMargin(2)
        self._speaker = QTextCharFormat()
        self._speaker.setFontWeight(QFont.Weight.Bold)
        self._body_block = QTextBlockFormat()
        self._thinking_block = QTextBlockFormat()
        self._thinking_block.setTopMargin(2)
        self._thinking_block.setBottomMargin(2)
        self._reasoning_block = QTextBlockFormat()
        self._reasoning_block.setLeftMargin(14)
        self._note_block = QTextBlockFormat()
        self._note_block.setTopMargin(4)

    def loadResource(self, type: int, name: QUrl | str, /) -> Any:  # noqa: N802  # Qt's names
        """Nothing, whatever is asked: see the module's docstring."""
        return None

    # -- what the window calls ---------------------------------------------------------------------------------

    def clear(self) -> None:
        self._flush_timer.stop()
        self._load_timer.stop()
        self._reply = None
        self._last_answer = ""
        self._plain_replies = False
        self._older.clear()
        self._copies.clear()
        self._reasonings.clear()
        super().clear()
        self._flatten_first_line()

    def show_thread(
        self,
        messages: Sequence[Message],
        *,
        completion: bool = False,
        versions: Mapping[int, tuple[int, int]] | None = None,
        titles: Mapping[str, str] | None = None,
    ) -> None:
        """A stored conversation: its end is rendered at once, the older messages above it in slices from a timer,
        oldest first (each slice then moves only the few messages below it, not all those above). Each message gets
        its actions (Edit, Regenerate, Continue) and, where `versions` says it has several, "◀ 2/3 ▶". A reply is
        headed by its model's title where `titles` (library name -> title) knows it, as while it streamed."""
        self.clear()
        self._plain_replies = completion
        messages = list(messages)
        self._versions = versions or {}
        self._titles = titles or {}
        self._last_message_id = messages[-1].id if messages else None
        if messages and messages[-1].role == "assistant":
            self._last_answer = messages[-1].content  # what reply_so_far() and Copy give, as after a streamed reply
        first, size = len(messages), 0
        while first > 0 and len(messages) - first < FIRST_SCREEN_MESSAGES and size < FIRST_SCREEN_CHARS:
            first -= 1
            size += len(messages[first].content)
        cursor = self._cursor_at(self._end())
        cursor.beginEditBlock()
        for message in messages[first:]:
            self._insert_message(cursor, message, completion)
        self._older, self._older_completion = deque(messages[:first]), completion
        if self._older:
            line = self._cursor_at(0)
            line.insertBlock(QTextBlockFormat(), QTextCharFormat())
            line.insertText("Loading earlier messages…", self._render.dim)
            self._older_cursor = self._cursor_at(0)  # before that line
            self._load_timer.start()
        cursor.endEditBlock()
        self._scroll_to_end()

    @property
    def loading_older(self) -> bool:
        """Whether older messages of the conversation on show are still to be rendered."""
        return bool(self._older)

    def show_message(self, message_id: int) -> None:
        for index, message in enumerate(self._older):
            if message.id == message_id:  # not rendered yet: render it, and those above it, now
                self._load_older(count=index + 1)
                break
        self.scrollToAnchor(f"m{message_id}")

    def add_turn(self, speaker: str, text: str, *, css_class: str) -> None:
        """A finished block of text, shown as written: the user's message, or the prompt in completion mode."""
        self._finish_reply("")
        cursor = self._cursor_at(self._end())
        cursor.beginEditBlock()
        self._insert_header(cursor, speaker, self._copy_key(text))
        self._render.plain(cursor, _one_line_break(text), self._body_block, QTextCharFormat())
        cursor.endEditBlock()
        self._plain_replies = css_class == "prompt"
        self._scroll_to_end()

    def begin_reply(self, speaker: str) -> None:
        self._finish_reply("")
        key = next(self._keys)
        cursor = self._cursor_at(self._end())
        self._insert_header(cursor, speaker, key)
        self._reply = _Reply(key, not self._plain_replies, self._cursor_at(cursor.block().position()))
        self._last_answer = ""
        self._scroll_to_end()

    def append_reply(self, text: str) -> None:
        """Answer text (without the reasoning: see append_reasoning), shown at the next frame."""
        if self._reply is not None and text:  # a late piece after end_reply has nowhere to go
            self._reply.answer.append(text)
            self._reply.unshown_answer.append(text)
            self._schedule()

    def append_reasoning(self, text: str) -> None:
        """Reasoning text (what ReasoningSplitter calls reasoning), shown under a Thinking line above the answer;
        it is folded away when the answer starts, unless the reader has clicked the line."""
        if self._reply is not None and text:
            self._reply.unshown_reasoning.append(text)
            self._schedule()

    def append_pieces(self, pieces: Iterable[tuple[str, str]], keeper: ReplyKeeper) -> None:
        """ReasoningSplitter's ("reasoning" or "answer", text) pieces, each shown here and handed to `keeper`."""
        for kind, piece in pieces:
            if kind == "reasoning":
                self.append_reasoning(piece)
                keeper.append_reasoning(piece)
            else:
                self.append_reply(piece)
                keeper.append(piece)

    def end_reply(self, note: str) -> str:
        """Shows what is pending, adds a small note under the reply, and returns the reply's answer text."""
        return self._finish_reply(note)

    def reply_so_far(self) -> str:
        """The answer text of the reply being written, or of the last one."""
        return "".join(self._reply.answer) if self._reply is not None else self._last_answer

    def flush(self) -> None:
        reply = self._reply
        if reply is None or not (reply.unshown_answer or reply.unshown_reasoning):
            return
        following = self._at_end()
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()  # one layout pass for the whole update
        if reply.unshown_reasoning:
            self._show_reasoning(reply, _one_line_break("".join(reply.unshown_reasoning)))
            reply.unshown_reasoning.clear()
        if reply.unshown_answer:
            self._show_answer(reply, "".join(reply.unshown_answer))
            reply.unshown_answer.clear()
        cursor.endEditBlock()
        if following:  # follow the reply only if the reader has not scrolled up to read something else
            self._scroll_to_end()

    # -- streaming -----------------------------------------------------------------------------------------------

    def _schedule(self) -> None:
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def _show_reasoning(self, reply: _Reply, text: str) -> None:
        reasoning = reply.reasoning
        if reasoning is None:
            header = reply.header.block()
            cursor = self._cursor_at(header.position() + header.length() - 1)
            reasoning = reply.reasoning = self._insert_thinking_line(cursor, "", unfolded=True, streaming=True)
        reasoning.text += text
        if reasoning.unfolded:
            self._insert_reasoning_text(reasoning, text)

    def _show_answer(self, reply: _Reply, text: str) -> None:
        reasoning = reply.reasoning
        if reasoning is not None and reasoning.streaming:  # the answer starts: the reasoning is done
            reasoning.streaming = False
            if reasoning.unfolded and not reply.folded_by_reader:
                self._fold(reasoning)
            self._relabel(reasoning)
        if not reply.markdown:
            cursor = self._cursor_at(self._end())
            if not reply.started:
                cursor.insertBlock(self._body_block, QTextCharFormat())
            cursor.insertText(_one_line_break(text), QTextCharFormat())
            reply.started = True
            return
        finished = reply.blocks.feed(text)
        pending = reply.blocks.pending()
        start = self._end() - reply.open_length
        if finished or not self._extend_open(reply, pending, text):
            cursor = self._remove_open(reply)
            for block in finished:
                self._insert_block(cursor, block)
            start = self._end()
            if isinstance(pending, CodeBlock):
                reply.open_frame = self._render.code_block(
                    cursor, pending.language, pending.code, highlight=False, copy_href=None
                )
            elif pending is not None:
                self._render.markdown(cursor, pending.source)
        if isinstance(pending, CodeBlock):
            reply.open_code = len(pending.code)
        reply.open_length = self._end() - start
        reply.started = True

    def _extend_open(self, reply: _Reply, pending: Block | None, text: str) -> bool:
        """Shows `text` by lengthening the open block as shown, rather than render it again, where that shows the
        same: a fence's code only grows; text may be appended as it is when it is letters and the like (no
        Markdown), after the same (no Markdown character just before it, which it could complete), the document
        ends with that same text (so nothing was turned into something else), and that is not a link (autolinks
        grow with text). False when it cannot."""
        if isinstance(pending, CodeBlock):
            if reply.open_frame is None:
                return False
            self._render.append_code(reply.open_frame, pending.code[reply.open_code :])
            return True
        if pending is None or not reply.open_length:
            return False
        source = pending.source
        end = len(source) - len(text)
        if not source.endswith(text) or not all(char.isalnum() or char in _PLAIN for char in text):
            return False
        window = max(0, end - _PLAIN_CHECKED)
        before = source[window:end]
        line_start = before.rfind("\n") + 1
        in_sight = line_start > 0 or window == 0  # the start of the line is within `before`
        before = before[line_start:]
        plain_start = len(before)
        while plain_start and (before[plain_start - 1].isalnum() or before[plain_start - 1] in _PLAIN):
            plain_start -= 1
        tail = before[plain_start:]
        # The word that `text` continues must be all plain: one with "." ":" or "@" may be an autolink, which
        # would take `text` in.
        if not text[0].isspace() and " " not in tail and not (plain_start == 0 and in_sight):
            return False
        kept = tail.rstrip(" ")  # the spaces ending a paragraph are not shown; they are once text follows them
        end_of_text = self._cursor_at(self._end())
        shown = QTextCursor(end_of_text)
        shown.setPosition(max(0, self._end() - len(kept)), QTextCursor.MoveMode.KeepAnchor)
        if not kept or shown.selectedText() != kept or end_of_text.charFormat().isAnchor():
            return False
        end_of_text.insertText((tail + text).rstrip(" ")[len(kept) :], end_of_text.charFormat())
        return True

    def _remove_open(self, reply: _Reply) -> QTextCursor:
        """Takes the block still being written out of the document; returns a cursor where it was."""
        cursor = self._cursor_at(self._end() - reply.open_length)
        if reply.open_length:
            cursor.setPosition(self._end(), QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
            block = cursor.block()
            if block.length() == 1:  # an empty block (after a table or code) took the removed text's format
                if (items := block.textList()) is not None:
                    items.remove(block)
                cursor.setBlockFormat(QTextBlockFormat())
        reply.open_length = 0
        reply.open_frame = None
        return cursor

    def _finish_reply(self, note: str) -> str:
        """Shows the rest of the reply being written, if there is one, and `note` under it."""
        reply = self._reply
        if reply is None and not note:
            return self._last_answer
        if reply is not None:
            self.flush()
        following = self._at_end()
        edit = QTextCursor(self.document())
        edit.beginEditBlock()
        if reply is not None:
            if reply.markdown and (tail := reply.blocks.finish()):
                cursor = self._remove_open(reply)
                for block in tail:
                    self._insert_block(cursor, block)
            if reply.reasoning is not None and reply.reasoning.streaming:  # it ended while thinking
                reply.reasoning.streaming = False
                self._relabel(reply.reasoning)
            self._last_answer = "".join(reply.answer)
            self._copies[reply.key] = self._last_answer
            self._reply = None
        if note:
            cursor = self._cursor_at(self._end())
            cursor.insertBlock(self._note_block, QTextCharFormat())
            cursor.insertText(note, self._render.dim)
        edit.endEditBlock()
        if following:
            self._scroll_to_end()
        return self._last_answer

    # -- building the document ---------------------------------------------------------------------------------

    def _insert_message(self, cursor: QTextCursor, message: Message, completion: bool) -> None:
        speakers = {"user": "Prompt (text completion)" if completion else "You", "system": "System prompt"}
        speaker = speakers.get(message.role) or self._titles.get(message.model or "", message.model or "Assistant")
        self._insert_header(cursor, speaker, self._copy_key(message.content), anchor=f"m{message.id}")
        self._insert_actions(cursor, message)
        if message.reasoning:
            self._insert_thinking_line(cursor, message.reasoning, unfolded=False, streaming=False)
        if message.role == "assistant" and not completion:
            self._insert_markdown(cursor, message.content)
        else:
            self._render.plain(cursor, _one_line_break(message.content), self._body_block, QTextCharFormat())
        if message.role == "assistant" and (note := reply_note(message.stats, message.state)):
            cursor.insertBlock(self._note_block, QTextCharFormat())
            cursor.insertText(note, self._render.dim)

    def _insert_header(self, cursor: QTextCursor, speaker: str, copy_key: int, *, anchor: str = "") -> None:
        cursor.insertBlock(self._header_block, QTextCharFormat())
        name = QTextCharFormat(self._speaker)
        if anchor:
            name.setAnchor(True)
            name.setAnchorNames([anchor])
        cursor.insertText(speaker, name)
        cursor.insertText("   ", QTextCharFormat())
        cursor.insertText("Copy", self._render.link(f"{ACTION_SCHEME}:copy/{copy_key}", quiet=True))

    def _insert_actions(self, cursor: QTextCursor, message: Message) -> None:
        if not self._message_actions:
            return
        actions = []
        if message.role == "user":
            actions.append(("Edit", "edit"))
        elif message.role == "assistant":
            actions.append(("Regenerate", "regenerate"))
            if message.id == self._last_message_id:
                actions.append(("Continue", "continue"))
        which, count = self._versions.get(message.id, (1, 1))
        for label, action in actions:
            cursor.insertText("   ", QTextCharFormat())
            cursor.insertText(label, self._render.link(f"{ACTION_SCHEME}:{action}/{message.id}", quiet=True))
        if count > 1:
            cursor.insertText("    ", QTextCharFormat())
            cursor.insertText("◀", self._render.link(f"{ACTION_SCHEME}:previous/{message.id}", quiet=True))
            cursor.insertText(f" {which}/{count} ", self._render.dim)
            cursor.insertText("▶", self._render.link(f"{ACTION_SCHEME}:next/{message.id}", quiet=True))

    def _insert_markdown(self, cursor: QTextCursor, text: str) -> None:
        """A whole stored answer: runs of text rendered in one piece each, code blocks on their own."""
        run: list[str] = []
        for block in split_blocks(text):
            if isinstance(block, TextBlock):
                run.append(block.source)
                continue
            if run:
                self._render.markdown(cursor, "".join(run))
                run = []
            self._insert_block(cursor, block)
        if run:
            self._render.markdown(cursor, "".join(run))

    def _insert_block(self, cursor: QTextCursor, block: Block) -> None:
        """A finished block: rendered for good."""
        if isinstance(block, TextBlock):
            self._render.markdown(cursor, block.source)
        else:
            copy = f"{ACTION_SCHEME}:copy/{self._copy_key(block.code)}"
            self._render.code_block(cursor, block.language, block.code, highlight=True, copy_href=copy)

    def _insert_thinking_line(self, cursor: QTextCursor, text: str, *, unfolded: bool, streaming: bool) -> _Reasoning:
        key = next(self._keys)
        cursor.insertBlock(self._thinking_block, QTextCharFormat())
        reasoning = _Reasoning(QTextCursor(cursor), text, unfolded, streaming)
        cursor.insertText(self._label(reasoning), self._render.link(f"{ACTION_SCHEME}:fold/{key}", quiet=True))
        reasoning.marker.setPosition(cursor.block().position())  # after the insertion, which would have moved it
        self._reasonings[key] = reasoning
        if unfolded and text:
            self._insert_reasoning_text(reasoning, text)
            cursor.setPosition(self._reasoning_start(reasoning) + reasoning.shown)
        return reasoning

    def _label(self, reasoning: _Reasoning) -> str:
        arrow = "▾" if reasoning.unfolded else "▸"
        if reasoning.streaming:
            return f"Thinking… {arrow}"
        words = len(reasoning.text.split())
        return f"Thinking ({words} word{'' if words == 1 else 's'}) {arrow}"

    def _relabel(self, reasoning: _Reasoning) -> None:
        start = reasoning.marker.block().position()
        cursor = self._cursor_at(start)
        cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor)
        cursor.insertText(self._label(reasoning), cursor.charFormat())
        reasoning.marker.setPosition(start)  # the new label went in at the marker, which Qt moved past it

    def _reasoning_start(self, reasoning: _Reasoning) -> int:
        """Where the reasoning's text goes: right after the Thinking line."""
        line = reasoning.marker.block()
        return line.position() + line.length() - 1

    def _insert_reasoning_text(self, reasoning: _Reasoning, text: str) -> None:
        cursor = self._cursor_at(self._reasoning_start(reasoning) + reasoning.shown)
        before = cursor.position()
        if not reasoning.shown:
            cursor.insertBlock(self._reasoning_block, self._render.dim)
        cursor.insertText(text, self._render.dim)
        reasoning.shown += cursor.position() - before

    def _fold(self, reasoning: _Reasoning) -> None:
        start = self._reasoning_start(reasoning)
        cursor = self._cursor_at(start)
        cursor.setPosition(start + reasoning.shown, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        reasoning.shown = 0
        reasoning.unfolded = False

    def _toggle(self, reasoning: _Reasoning) -> None:
        cursor = self._cursor_at(0)
        cursor.beginEditBlock()
        if reasoning.unfolded:
            self._fold(reasoning)
        else:
            reasoning.unfolded = True
            self._insert_reasoning_text(reasoning, reasoning.text)
        self._relabel(reasoning)
        cursor.endEditBlock()
        if self._reply is not None and self._reply.reasoning is reasoning:
            self._reply.folded_by_reader = True

    def _load_older(self, count: int = 0) -> None:
        """Renders older messages in their place: `count` of them, or as many as fit in a slice. What the reader
        sees stays in place, and so does the end of the conversation if they are there."""
        bar = self.verticalScrollBar()
        from_bottom = bar.maximum() - bar.value()
        layout = self.document().documentLayout()
        above_view = layout.blockBoundingRect(self._older_cursor.block()).bottom() <= bar.value()
        deadline = time.perf_counter() + LOAD_SLICE_MS / 1000
        cursor = self._older_cursor
        cursor.beginEditBlock()
        while self._older and (count > 0 or time.perf_counter() < deadline):
            self._insert_message(cursor, self._older.popleft(), self._older_completion)
            count -= 1
        if not self._older:
            self._load_timer.stop()
            loading = cursor.block().next()  # "Loading earlier messages…"
            cursor.setPosition(loading.position() + loading.length() - 1, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
        cursor.endEditBlock()
        if above_view:
            bar.setValue(bar.maximum() - from_bottom)

    def _flatten_first_line(self) -> None:
        """The document's first line stays empty (messages go in after it), and flat, so that a conversation starts
        at the top."""
        flat = QTextBlockFormat()
        flat.setLineHeight(0, QTextBlockFormat.LineHeightTypes.FixedHeight.value)
        self._cursor_at(0).setBlockFormat(flat)

    # -- links ---------------------------------------------------------------------------------------------------

    def _on_link(self, url: QUrl) -> None:
        if url.scheme() in SAFE_SCHEMES:
            QDesktopServices.openUrl(url)
            return
        if url.scheme() != ACTION_SCHEME:
            return  # javascript:, file:, relative links...: never followed
        action, _, key_text = url.path().partition("/")
        key = int(key_text) if key_text.isdigit() else 0
        if action == "copy":
            text = self._copies.get(key)
            if text is None and self._reply is not None and self._reply.key == key:
                text = self.reply_so_far()
            if text is not None:
                QGuiApplication.clipboard().setText(text)
        elif action == "fold" and (reasoning := self._reasonings.get(key)) is not None:
            self._toggle(reasoning)
        elif action in MESSAGE_ACTIONS and key:
            self.message_action.emit(action, key)

    # -- helpers -------------------------------------------------------------------------------------------------

    def _copy_key(self, text: str) -> int:
        key = next(self._keys)
        self._copies[key] = text
        return key

    def _end(self) -> int:
        return self.document().characterCount() - 1

    def _cursor_at(self, position: int) -> QTextCursor:
        cursor = QTextCursor(self.document())
        cursor.setPosition(position)
        return cursor

    def _at_end(self) -> bool:
        return self.verticalScrollBar().value() >= self.verticalScrollBar().maximum() - 4

    def _scroll_to_end(self) -> None:
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())


def _one_line_break(text: str) -> str:
    """Windows and old Mac line ends as "\\n": the document counts one character per line break."""
    return text.replace("\r\n", "\n").replace("\r", "\n")
