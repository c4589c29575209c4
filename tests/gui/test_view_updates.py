"""20,000 updates of the chat view, each touching only the block being written: so an update costs the same at the
end of a long reply in a long conversation as at its start (re-rendering everything cost 57 ms per token with 20
earlier messages). Checked by what each update changes in the document, not by timing it.

It also guards PySide6 bumps: 6.12.0 on CPython 3.11 dies ("Fatal Python error: none_dealloc") after ~5,000 calls
of void wrapper methods; 6.11.3 does not."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from localai_app.core.conversations import Message
from localai_app.ui.chat_view import ChatView
from localai_app.ui.markdown_blocks import TextBlock, split_blocks

pytestmark = pytest.mark.gui

UPDATES = 20_000


def piece(index: int) -> str:
    """The reply's token `index`: paragraphs, a list and a code block every 400 tokens, as a model writes."""
    position = index % 400
    if position == 100:
        return "\n\n- a list item"
    if 100 < position < 140 and position % 10 == 0:
        return f"\n- item {index}"
    if position == 140:
        return "\n\n```python\n"
    if 140 < position < 200:
        return f"x{index} = {index}\n" if position % 5 == 0 else f"# t{index} "
    if position == 200:
        return "\n```\n\n"
    if position % 50 == 0:
        return "\n\n"
    return f"t{index} "


def test_twenty_thousand_updates_touch_only_the_block_being_written(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    earlier = [
        Message(
            number,
            1,
            None,
            "user" if number % 2 else "assistant",
            f"Earlier **message** {number}",
            None,
            "complete",
            0.0,
        )
        for number in range(1, 21)
    ]
    view.show_thread(earlier)
    view.add_turn("You", "Write a lot.", css_class="user")
    view.begin_reply("model")
    reply_start = view.document().characterCount() - 1
    changes: list[tuple[int, int, int]] = []
    view.document().contentsChange.connect(lambda position, removed, added: changes.append((position, removed, added)))
    sizes = []
    for index in range(UPDATES):
        view.append_reply(piece(index))
        changes.clear()
        view.flush()
        assert all(position >= reply_start for position, _, _ in changes), index  # nothing above is touched
        sizes.append(max((removed + added for _, removed, added in changes), default=0))
    text = view.end_reply("done")
    assert text == "".join(piece(index) for index in range(UPDATES)) and len(text) > 100_000
    assert "t19999" in view.toPlainText() and "Earlier message 1" in view.toPlainText()
    # An update removes at most the block being written as it was shown, and adds it again (with a code block's
    # header line): bounded by the largest block, however long the reply has grown.
    largest = max(len(block.source if isinstance(block, TextBlock) else block.code) for block in split_blocks(text))
    assert largest < 1000 and max(sizes) <= 2 * (largest + len("python   Copy\n"))
