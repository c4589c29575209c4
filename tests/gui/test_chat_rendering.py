"""The chat view as a reader sees it: Markdown, code, copying, reasoning folded, links and images kept harmless,
long conversations opened quickly; and a reply streamed in any cut shows the same as in one piece."""

from __future__ import annotations

import http.server
import random
import threading
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QPoint, Qt, QUrl
from PySide6.QtGui import (
    QDesktopServices,
    QGuiApplication,
    QTextBlock,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextListFormat,
    QTextTable,
)
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from localai_app.core.conversations import Message
from localai_app.ui.chat_view import ChatView
from localai_app.ui.markdown_blocks import BlockSplitter, CodeBlock, TextBlock, split_blocks

pytestmark = pytest.mark.gui

CODE = 'def greet(name: str) -> str:\n    return f"Hello, {name}!"  # a *comment*, not Markdown'
REPLY = f"""Here is a **table**:

| Language | Typing |
|---|---|
| Python | dynamic |
| Rust | static |

And the code:

```python
{CODE}
```

- first item with `inline code`
- second item with a [link](https://example.com)

1. one
2. two

Done."""

# Markdown that a careless shortcut would show wrongly when it streams in small pieces.
TRICKY = f"""# A heading that grows

Plain words, then **bold words** and *italic* and __strong__bar and _under_score and foo__bar__baz.
An entity &amp; another &copy; and a www.example.com/path autolink and https://example.org/x?y=1 too.
Trailing spaces make a break{"  "}
here, and a line ending in spaces{"   "}

- item one with `code` and more words after it
- item two
  - nested item that is long enough to pass thirty-two characters

3. third
4. fourth

> a quote that goes on for a while with *emphasis*

| a | b |
|---|---|
| one | two |

```js
let x = "**not bold**";
```

Last paragraph with words and words and words ending without a newline"""


def message(number: int, role: str, content: str, reasoning: str | None = None) -> Message:
    return Message(number, 1, None, role, content, reasoning, "complete", 0.0, "tiny")  # type: ignore[arg-type]


@pytest.fixture
def view(qtbot: QtBot) -> ChatView:
    view = ChatView()
    view.resize(800, 600)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    return view


def stream(view: ChatView, text: str, cut: int, *, reasoning: str = "") -> str:
    view.begin_reply("model")
    for index in range(0, len(reasoning), cut):
        view.append_reasoning(reasoning[index : index + cut])
        view.flush()
    for index in range(0, len(text), cut):
        view.append_reply(text[index : index + cut])
        view.flush()
    return view.end_reply("note")


def signature(document: QTextDocument) -> list[tuple[object, ...]]:
    """What the document shows: each block's frame kind, heading, list, and its runs of text with their looks."""
    blocks: list[tuple[object, ...]] = []
    block = document.begin()
    while block.isValid():
        runs: list[list[object]] = []
        fragments = block.begin()
        while not fragments.atEnd():
            fragment = fragments.fragment()
            char = fragment.charFormat()
            href = char.anchorHref()
            action = href.rpartition("/")[0] if href.startswith("localai:") else href  # keys differ between views
            look = [char.fontWeight(), char.fontItalic(), action, char.fontFixedPitch(), char.foreground()]
            if runs and runs[-1][1:] == look:
                runs[-1][0] = str(runs[-1][0]) + fragment.text()
            else:
                runs.append([fragment.text(), *look])
            fragments += 1
        frame = QTextCursor(block).currentFrame()
        list_style = block.textList().format().style() if block.textList() is not None else None
        blocks.append((type(frame).__name__, block.blockFormat().headingLevel(), list_style, runs))
        block = block.next()
    return blocks


def find(view: ChatView, text: str, occurrence: int = 0) -> QTextCursor:
    exact = QTextDocument.FindFlag.FindCaseSensitively
    found = view.document().find(text, 0, exact)
    for _ in range(occurrence):
        found = view.document().find(text, found, exact)
    assert not found.isNull(), f"{text!r} is not shown"
    return found


def click(qtbot: QtBot, view: ChatView, text: str, occurrence: int = 0) -> None:
    """A real click in the middle of the first character of that text on screen."""
    found = find(view, text, occurrence)
    cursor = QTextCursor(found)
    cursor.setPosition(found.selectionStart() + 1)
    view.setTextCursor(cursor)
    view.ensureCursorVisible()
    rect = view.cursorRect(cursor)
    point = QPoint(rect.left() - 2, rect.center().y())
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point)


# -- Markdown ------------------------------------------------------------------------------------------------------


def test_markdown_is_rendered_with_a_table_lists_and_highlighted_code(view: ChatView) -> None:
    assert stream(view, REPLY, 4) == REPLY
    document = view.document()
    tables = [frame for frame in document.rootFrame().childFrames() if isinstance(frame, QTextTable)]
    assert len(tables) == 1 and (tables[0].rows(), tables[0].columns()) == (3, 2)
    assert tables[0].cellAt(2, 0).firstCursorPosition().block().text() == "Rust"
    text = view.toPlainText()
    assert text.count('return f"Hello, {name}!"') == 1 and "**table**" not in text and "table" in text
    items = [(block.text(), block.textList().format().style()) for block in _blocks(document) if block.textList()]
    assert items == [
        ("first item with inline code", QTextListFormat.Style.ListDisc),
        ("second item with a link", QTextListFormat.Style.ListDisc),
        ("one", QTextListFormat.Style.ListDecimal),
        ("two", QTextListFormat.Style.ListDecimal),
    ]
    keyword = _char_at(view, find(view, "return").selectionStart() + 1)  # the format of its first letter
    assert keyword.fontFixedPitch() and keyword.foreground().color() != view.palette().text().color()


def test_a_reply_streamed_in_pieces_shows_the_same_as_in_one_piece(qtbot: QtBot) -> None:
    """At every update, not only at the end: the block being written is re-rendered or lengthened as it stands,
    and must look as if the text so far had come in one piece."""
    streamed, reference = ChatView(), ChatView()
    qtbot.addWidget(streamed)
    qtbot.addWidget(reference)
    rolls = random.Random(7)
    for cut in (1, 4, 0):  # 0: random pieces of 1 to 12 characters, flushed 70% of the time
        streamed.clear()
        streamed.begin_reply("model")
        position = 0
        while position < len(TRICKY):
            step = cut or rolls.randint(1, 12)
            streamed.append_reply(TRICKY[position : position + step])
            position += step
            if cut or rolls.random() < 0.7:
                streamed.flush()
                reference.clear()
                reference.begin_reply("model")
                reference.append_reply(TRICKY[:position])
                reference.flush()
                assert signature(streamed.document()) == signature(reference.document()), TRICKY[:position]
        assert streamed.end_reply("note") == TRICKY
        reference.end_reply("note")
        assert signature(streamed.document()) == signature(reference.document())


def test_the_users_text_is_shown_as_written(view: ChatView) -> None:
    typed = "<b>not bold</b> **not bold** ![no](http://127.0.0.1:9/x.png)\n\n    four spaces"
    view.add_turn("You", typed, css_class="user")
    assert typed in view.toPlainText()


def test_a_text_completion_continues_the_prompt_as_written(view: ChatView) -> None:
    view.add_turn("Prompt (text completion)", "Once upon a time", css_class="prompt")
    assert stream(view, " there was a *star*.\n\nThe end", 3) == " there was a *star*.\n\nThe end"
    assert " there was a *star*.\n\nThe end" in view.toPlainText()


# -- copying ---------------------------------------------------------------------------------------------------------


def test_copy_links_put_the_exact_code_and_message_on_the_clipboard(qtbot: QtBot, view: ChatView) -> None:
    view.add_turn("You", "Show me code", css_class="user")
    stream(view, REPLY, 5)
    clipboard = QGuiApplication.clipboard()
    click(qtbot, view, "Copy", occurrence=2)  # the user's message, the reply, then the code block
    assert clipboard.text() == CODE
    click(qtbot, view, "Copy", occurrence=1)
    assert clipboard.text() == REPLY
    click(qtbot, view, "Copy", occurrence=0)
    assert clipboard.text() == "Show me code"


# -- harmless links and images ---------------------------------------------------------------------------------------


class _CountingServer(http.server.ThreadingHTTPServer):
    requests = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, _CountingServer)
        self.server.requests += 1
        self.send_response(404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def image_server() -> Iterator[_CountingServer]:
    server = _CountingServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


class _RecordingView(ChatView):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def loadResource(self, type: int, name: QUrl | str, /) -> object:  # noqa: N802  # Qt's names
        self.asked.append(QUrl(name).toString())
        return super().loadResource(type, name)


def test_images_in_model_text_are_never_fetched(qtbot: QtBot, image_server: _CountingServer) -> None:
    view = _RecordingView()
    view.resize(800, 600)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    url = f"http://127.0.0.1:{image_server.server_address[1]}/pixel.png"
    text = f'An image: ![a pixel]({url})\n\n<img src="{url}">\n\n[![linked]({url})](https://example.com)'
    stream(view, text, 3)
    view.show_thread([message(1, "assistant", text), message(2, "user", f"![mine]({url})")])
    qtbot.wait(200)  # layout and painting, where a document would load images
    assert view.asked == [] and image_server.requests == 0
    assert "[image: a pixel]" in view.toPlainText()
    block = view.document().begin()
    while block.isValid():
        fragments = block.begin()
        while not fragments.atEnd():
            assert not fragments.fragment().charFormat().isImageFormat()
            fragments += 1
        block = block.next()


def test_only_http_links_open_and_only_when_clicked(
    qtbot: QtBot, view: ChatView, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []

    def open_url(url: QUrl) -> bool:
        opened.append(url.toString())
        return True

    monkeypatch.setattr(QDesktopServices, "openUrl", open_url)
    text = (
        "[run](javascript:alert(1)) and [read](file:///etc/passwd) and [copy](localai:copy/1) "
        "and [site](https://example.com/page)"
    )
    stream(view, text, 6)
    assert opened == []
    for label in ("run", "read"):
        click(qtbot, view, label)
    assert opened == []
    assert not _char_at(view, find(view, "copy").selectionStart() + 1).isAnchor()  # not the view's own kind of link
    click(qtbot, view, "site")
    assert opened == ["https://example.com/page"]


# -- reasoning ------------------------------------------------------------------------------------------------------


def test_reasoning_streams_open_then_folds_when_the_answer_starts_and_a_click_toggles_it(
    qtbot: QtBot, view: ChatView
) -> None:
    view.begin_reply("model")
    view.append_reasoning("The user wants a greeting.\nI will")
    view.flush()
    assert "Thinking… ▾" in view.toPlainText() and "The user wants a greeting." in view.toPlainText()
    view.append_reasoning(" say hello.")
    view.append_reply("Hello!")
    assert view.end_reply("note") == "Hello!"
    shown = view.toPlainText()
    assert "Thinking (9 words) ▸" in shown and "greeting" not in shown and "Hello!" in shown
    assert shown.index("Thinking") < shown.index("Hello!")
    click(qtbot, view, "Thinking")
    assert "The user wants a greeting.\nI will say hello." in view.toPlainText()
    assert "Thinking (9 words) ▾" in view.toPlainText()
    click(qtbot, view, "Thinking")
    assert "greeting" not in view.toPlainText() and view.toPlainText() == shown


def test_a_reader_who_folds_the_reasoning_while_it_streams_keeps_it_folded(qtbot: QtBot, view: ChatView) -> None:
    view.begin_reply("model")
    view.append_reasoning("First thought.")
    view.flush()
    click(qtbot, view, "Thinking")
    view.append_reasoning(" Second thought.")
    view.flush()
    assert "thought" not in view.toPlainText()
    click(qtbot, view, "Thinking")
    assert "First thought. Second thought." in view.toPlainText()
    view.append_reply("Answer")
    view.end_reply("")
    assert "First thought. Second thought." in view.toPlainText()  # unfolded by the reader: left so


def test_stored_reasoning_is_folded_above_its_answer(qtbot: QtBot, view: ChatView) -> None:
    view.show_thread(
        [message(1, "user", "Hi"), message(2, "assistant", "Hello **there**", "They said hi; greet back.")]
    )
    assert view.toPlainText().splitlines()[-2:] == ["Thinking (5 words) ▸", "Hello there"]
    click(qtbot, view, "Thinking")
    assert view.toPlainText().splitlines()[-3:] == ["Thinking (5 words) ▾", "They said hi; greet back.", "Hello there"]


# -- long conversations ---------------------------------------------------------------------------------------------


def test_a_thousand_messages_show_the_end_at_once_and_the_rest_soon(qtbot: QtBot, view: ChatView) -> None:
    messages = [
        message(number, "user" if number % 2 else "assistant", f"Message number {number} with *some* Markdown.")
        for number in range(1, 1001)
    ]
    view.show_thread(messages)
    shown = view.toPlainText()
    assert "Message number 1000 with some Markdown." in shown and "Message number 1 with" not in shown
    assert view.loading_older
    scroll = view.verticalScrollBar()
    assert scroll.value() == scroll.maximum()
    qtbot.waitUntil(lambda: not view.loading_older, timeout=30_000)
    shown = view.toPlainText()
    positions = [shown.index(f"Message number {number} with") for number in range(1, 1001)]
    assert positions == sorted(positions)  # all there, in order
    assert "Loading earlier messages" not in shown
    assert scroll.value() == scroll.maximum()  # the reader who stayed at the end is still there


def test_a_search_hit_in_a_message_not_rendered_yet_is_shown(view: ChatView) -> None:
    messages = [message(number, "user", f"Message {number}") for number in range(1, 501)]
    view.show_thread(messages)
    view.show_message(3)
    assert "Message 3\n" in view.toPlainText()
    scroll = view.verticalScrollBar()
    top = view.cursorForPosition(QPoint(4, 4)).block()
    assert scroll.value() < scroll.maximum() and top.text().startswith(("You", "Message 3"))


def test_a_reader_reading_the_oldest_messages_is_not_moved_while_the_rest_loads(qtbot: QtBot, view: ChatView) -> None:
    code = "```python\n" + "print('highlighting takes a while')\n" * 20 + "```"
    messages = [message(number, "assistant", f"Message {number}\n\n{code}") for number in range(1, 601)]
    view.show_thread(messages)
    qtbot.waitUntil(lambda: "Message 1\n" in view.toPlainText())  # the oldest come first
    assert view.loading_older
    view.verticalScrollBar().setValue(0)
    qtbot.waitUntil(lambda: not view.loading_older, timeout=30_000)
    assert view.verticalScrollBar().value() == 0


# -- cutting Markdown into blocks ------------------------------------------------------------------------------------


def test_markdown_is_cut_into_the_same_blocks_whatever_the_pieces() -> None:
    whole = split_blocks(TRICKY)
    assert [type(block) for block in whole].count(CodeBlock) == 1
    for cut in range(1, 9):
        splitter = BlockSplitter()
        blocks = [block for index in range(0, len(TRICKY), cut) for block in splitter.feed(TRICKY[index : index + cut])]
        assert [*blocks, *splitter.finish()] == whole


def test_blocks_finish_at_blank_lines_fences_and_list_items() -> None:
    splitter = BlockSplitter()
    assert splitter.feed("A paragraph\nstill open\n\n") == []
    assert splitter.pending() == TextBlock("A paragraph\nstill open\n\n")
    assert splitter.feed("N") == [TextBlock("A paragraph\nstill open\n\n")]  # the next one starts at the margin
    assert splitter.feed("ext\n```py\nx = 1\n") == [TextBlock("Next\n")]
    assert splitter.pending() == CodeBlock("py", "x = 1\n", closed=False)
    assert splitter.feed("```\n- a\n  continued\n") == [CodeBlock("py", "x = 1", closed=True)]
    assert splitter.feed("- b\n") == [TextBlock("- a\n  continued\n")]
    assert splitter.feed("\n    indented code\n") == []  # indented: still the list item's
    assert splitter.finish() == [TextBlock("- b\n\n    indented code\n")]
    assert split_blocks("````\n```\nstill code\n````\nafter") == [
        CodeBlock("", "```\nstill code", closed=True),
        TextBlock("after\n"),  # the end of the stream completes the last line
    ]
    assert split_blocks("  ```\n  indented fence\n```") == [CodeBlock("", "indented fence", closed=True)]
    assert split_blocks("```\nnever closed") == [CodeBlock("", "never closed", closed=False)]


def _blocks(document: QTextDocument) -> Iterator[QTextBlock]:
    block = document.begin()
    while block.isValid():
        yield block
        block = block.next()


def _char_at(view: ChatView, position: int) -> QTextCharFormat:
    """The format of the character before `position`."""
    cursor = QTextCursor(view.document())
    cursor.setPosition(position)
    return cursor.charFormat()
