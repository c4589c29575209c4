"""PySide6 6.12.0 on CPython 3.11 dies ("Fatal Python error: none_dealloc") after ~5,000 calls of void wrapper
methods; 6.11.3 does not. This makes 20,000 updates of the chat view so a bad PySide6 bump fails here."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from localai_app.ui.chat_view import ChatView

pytestmark = pytest.mark.gui


def test_twenty_thousand_view_updates(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.begin_reply("model")
    for index in range(20_000):
        view.append_reply(f"t{index} ")
        view.flush()
    text = view.end_reply("done")
    assert text.startswith("t0 t1 ") and text.endswith("t19999 ")
    assert "t19999" in view.toPlainText()
