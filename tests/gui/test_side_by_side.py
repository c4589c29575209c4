"""Side by side with real engines: one message to a chat model and a base model, both panes streaming at once with
their numbers, saved as one conversation that reopens in two panes and exports both replies; one side failing while
the other carries on; and presenter mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from localai_app.core.paths import AppPaths
from localai_app.core.side_by_side import is_side_by_side
from localai_app.ui.main_window import MainWindow
from localai_app.ui.side_by_side import SideBySideWindow
from tests.gui.conftest import open_window

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000


def open_side_by_side(qtbot: QtBot, window: MainWindow, temperatures: tuple[float, float]) -> SideBySideWindow:
    side_by_side = window.open_side_by_side()
    qtbot.waitUntil(side_by_side.isVisible)
    side_by_side.choose("tiny-chat", "tiny-base")
    for pane, temperature in zip(side_by_side.panes, temperatures, strict=True):
        pane.settings_panel.temperature.setValue(temperature)
        pane.settings_panel.seed.setValue(3)
        pane.settings_panel.max_tokens.setValue(12)
    return side_by_side


def send(qtbot: QtBot, side_by_side: SideBySideWindow, text: str) -> None:
    side_by_side.prompt_box.setPlainText(text)
    QTest.keyClick(side_by_side.prompt_box, Qt.Key.Key_Return)
    assert side_by_side.busy and side_by_side.stop_button.isEnabled()
    qtbot.waitUntil(lambda: not side_by_side.busy, timeout=TIMEOUT_MS)


def test_two_models_stream_side_by_side_saved_reopened_and_exported(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    side_by_side = open_side_by_side(qtbot, window, (0.0, 1.0))
    left, right = side_by_side.panes
    assert "temperature 0" in left.caption.text() and "temperature 1" in right.caption.text()
    assert "text completion" in right.caption.text()  # the base model continues the text: said before sending
    assert f"{side_by_side.threads} of this machine's" in side_by_side.explanation.text()

    send(qtbot, side_by_side, "Hello there")
    for pane in side_by_side.panes:
        assert "tokens/s" in pane.stats_label.text() and "first token after" in pane.stats_label.text()
        assert "prompt" in pane.stats_label.text()
        assert pane.chat_view.reply_so_far()
    assert side_by_side.grab().save(str(tmp_path / "side-by-side.png"))

    send(qtbot, side_by_side, "And again")  # a follow-up goes on in each side's own branch
    conversation_id = side_by_side.session.conversation_id
    assert conversation_id is not None
    store = window.session.store
    assert is_side_by_side(store.get(conversation_id).settings)
    assert [c.id for c in store.list_conversations()] == [conversation_id]  # one conversation, in the sidebar
    assert window.sidebar.list.count() == 1
    assert "side by side" in window.sidebar.list.item(0).text()
    first = store.thread(conversation_id)[0]
    replies = store.children(first.id)
    assert [reply.model for reply in replies] == ["tiny-chat", "tiny-base"]
    assert [reply.settings.temperature for reply in replies if reply.settings] == [0.0, 1.0]
    assert all(reply.stats and reply.stats["completion_tokens"] > 0 for reply in replies)
    shown = [pane.chat_view.toPlainText() for pane in side_by_side.panes]

    # Reopened from the sidebar (after a normal chat was on show): two panes again, as they were.
    side_by_side.close()
    side_by_side.new_conversation()
    window.open_conversation(conversation_id)
    qtbot.waitUntil(side_by_side.isVisible)
    assert [pane.chat_view.toPlainText().count("And again") for pane in side_by_side.panes] == [1, 1]
    assert [getattr(pane.current_model(), "name", None) for pane in side_by_side.panes] == ["tiny-chat", "tiny-base"]
    assert side_by_side.panes[1].settings_panel.temperature.value() == 1.0
    # No Regenerate or ◀ 1/2 ▶ there: nothing in a pane acts on them, and the two replies are each other's versions.
    assert not any(
        word in pane.chat_view.toPlainText() for pane in side_by_side.panes for word in ("Regenerate", "Edit", "1/2")
    )
    assert all(reply.content[:5] in text for reply, text in zip(replies, shown, strict=True))

    markdown = tmp_path / "side-by-side.md"
    window.sidebar.export_to(conversation_id, markdown, "md")
    text = markdown.read_text(encoding="utf-8")
    assert "## Assistant · tiny-chat (temperature 0, top-p 0.95, seed 3)" in text
    assert "## Assistant · tiny-base (temperature 1, top-p 0.95, seed 3)" in text
    assert text.count("## You") == 2


def test_one_side_failing_leaves_the_other_going_and_nothing_lost(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    side_by_side = open_side_by_side(qtbot, window, (0.7, 0.7))
    (tiny_library_paths.models / "tiny-base.gguf").unlink()  # moved away after the library listed it
    send(qtbot, side_by_side, "Hello there")
    left, right = side_by_side.panes
    assert "tokens/s" in left.stats_label.text()
    assert right.stats_label.text().startswith("Interrupted: ")
    assert "no longer exists" in right.stats_label.text()
    assert "Traceback" not in right.stats_label.text()
    conversation_id = side_by_side.session.conversation_id
    assert conversation_id is not None
    first = window.session.store.thread(conversation_id)[0]
    states = [reply.state for reply in window.session.store.children(first.id)]
    assert states == ["complete", "interrupted"]
    assert side_by_side.grab().save(str(tmp_path / "side-by-side-failed.png"))


def test_presenter_mode_carries_over_and_f5_in_either_window_ends_it(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    side_by_side = open_side_by_side(qtbot, window, (0.0, 1.0))
    everyday = side_by_side.panes[0].stats_label.font().pointSizeF()
    window.set_presenting(True)
    assert side_by_side.windowState() & Qt.WindowState.WindowFullScreen
    qtbot.wait(50)  # full screen first: offscreen, that is a small virtual screen; then a projector's size
    side_by_side.resize(1920, 1080)
    send(qtbot, side_by_side, "Hello there")
    assert all(pane.stats_label.isVisible() and pane.model_picker.isVisible() for pane in side_by_side.panes)
    assert side_by_side.stop_button.isVisible() and side_by_side.send_button.isVisible()
    # Presenter mode's large text is the application's font: the panes' text is large too.
    assert side_by_side.panes[0].stats_label.font().pointSizeF() >= 1.4 * everyday
    assert side_by_side.grab().save(str(tmp_path / "side-by-side-presenting.png"))
    side_by_side.activateWindow()
    qtbot.waitUntil(side_by_side.isActiveWindow)
    QTest.keyClick(side_by_side, Qt.Key.Key_F5)
    assert not window.presenting
    assert not side_by_side.windowState() & Qt.WindowState.WindowFullScreen
