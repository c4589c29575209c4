"""The window as a user drives it: pick a model, send, watch the reply stream, stop, read the stats."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from localai_app.app import build_window
from localai_app.core.paths import AppPaths
from localai_app.core.settings import load_settings
from localai_app.ui.library_panel import COLUMNS
from localai_app.ui.main_window import MainWindow
from tests.fakes.gguf_builder import write_tiny_model
from tests.gui.conftest import open_window

pytestmark = pytest.mark.gui
REPLY_TIMEOUT_MS = 60_000


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.prompt_box.setPlainText(text)
    window.send_button.click()
    assert window.stop_button.isEnabled()


def test_chat_with_a_template_model_streams_and_shows_stats(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    assert "Chat with Tiny Test" in window.mode_label.text()
    window.max_tokens.setValue(20)
    send(qtbot, window, "Hello there")
    qtbot.waitUntil(lambda: bool(window.chat_view.reply_so_far()), timeout=REPLY_TIMEOUT_MS)
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)
    assert "tokens/s" in window.stats_label.text() and "first token after" in window.stats_label.text()
    assert "Hello there" in window.chat_view.toPlainText()
    conversation = window.session.conversation_id
    assert conversation is not None
    thread = window.session.store.thread(conversation)
    assert [(message.role, message.state) for message in thread] == [("user", "complete"), ("assistant", "complete")]
    assert thread[0].content == "Hello there" and thread[1].content == window.chat_view.reply_so_far()
    assert thread[1].model == "tiny-chat" and thread[1].stats and thread[1].stats["completion_tokens"] > 0


def test_base_model_opens_in_labelled_completion_mode_and_stops(
    qtbot: QtBot, app_paths: AppPaths, starter_model: Path, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, app_paths, "gemma-3-270m-q4_k_m")
    close_windows.append(window)
    assert "Text completion" in window.mode_label.text() and "Gemma Terms of Use" in window.mode_label.text()
    window.max_tokens.setValue(2000)
    send(qtbot, window, "The history of Rome")
    qtbot.waitUntil(lambda: bool(window.chat_view.reply_so_far()), timeout=REPLY_TIMEOUT_MS)

    def context_used() -> int:  # "Context 1,234 of 8,192 tokens (15 %) · …"
        return int(window.context_label.text().split()[1].replace(",", ""))

    # The gauge follows the reply while it is written, not only once it ends.
    seen = context_used()
    qtbot.waitUntil(lambda: context_used() > seen, timeout=REPLY_TIMEOUT_MS)
    assert window.stop_button.isEnabled()
    window.stop_button.click()
    qtbot.waitUntil(window.send_button.isEnabled, timeout=10_000)
    assert window.stats_label.text().startswith("Stopped after")
    assert window.chat_view.reply_so_far()

    # Stop also ends a reply still in its prompt pass, which has no token yet to notice it at.
    send(qtbot, window, "Every lesson in this course begins with a question about the world. " * 220)

    def press_stop_until_idle() -> bool:  # until the reply is being read, a press has nothing to end yet
        window.stop_button.click()
        return window.send_button.isEnabled()

    qtbot.waitUntil(press_stop_until_idle, timeout=10_000)
    assert window.stats_label.text() == "Stopped after 0 tokens."
    assert not window.error_banner.isVisible()


def test_killed_engine_keeps_the_reply_explains_and_recovers(
    qtbot: QtBot, app_paths: AppPaths, starter_model: Path, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, app_paths, "gemma-3-270m-q4_k_m")
    close_windows.append(window)
    window.max_tokens.setValue(2000)
    send(qtbot, window, "Once upon a time")
    qtbot.waitUntil(lambda: bool(window.chat_view.reply_so_far()), timeout=REPLY_TIMEOUT_MS)
    qtbot.waitUntil(lambda: len(window.chat_view.reply_so_far()) > 20, timeout=REPLY_TIMEOUT_MS)
    pid = window.engine_manager.engine_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    qtbot.waitUntil(window.error_banner.isVisible, timeout=REPLY_TIMEOUT_MS)
    assert "was killed" in window.error_banner.text()
    assert "Interrupted" in window.chat_view.toPlainText()
    partial = window.chat_view.reply_so_far()
    assert partial and partial in window.chat_view.toPlainText()

    window.max_tokens.setValue(5)
    send(qtbot, window, "A second try")
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)
    assert "tokens/s" in window.stats_label.text()
    assert not window.error_banner.isVisible()
    assert window.engine_manager.engine_pid not in (None, pid)


def test_model_llama_cpp_cannot_load_is_explained_and_app_keeps_working(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    # A valid header with an architecture llama.cpp does not know: only llama.cpp itself can refuse it.
    write_tiny_model(tiny_library_paths.models / "strange.gguf", architecture="nonsense")
    window = open_window(qtbot, tiny_library_paths, "strange")
    close_windows.append(window)
    qtbot.waitUntil(window.error_banner.isVisible, timeout=REPLY_TIMEOUT_MS)
    assert "strange.gguf" in window.error_banner.text()
    window.model_picker.setCurrentIndex([m.name for m in window._usable()].index("tiny-chat"))
    window.max_tokens.setValue(3)
    send(qtbot, window, "hi")
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)
    assert "tokens/s" in window.stats_label.text()


def test_corrupt_file_is_listed_as_unusable_not_offered(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    (tiny_library_paths.models / "broken.gguf").write_bytes(b"GGUF\x03\0\0\0" + b"\xff" * 64)
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    table = window.library_panel.table
    cells = [[table.item(row, column).text() for column in range(len(COLUMNS))] for row in range(table.rowCount())]  # type: ignore[union-attr]
    (broken,) = [row for row in cells if row[0] == "broken"]
    assert "not a usable GGUF file" in broken[COLUMNS.index("SHA-256")]
    assert "broken" not in [window.model_picker.itemData(i) for i in range(window.model_picker.count())]


def test_closing_the_window_leaves_no_engine(qtbot: QtBot, tiny_library_paths: AppPaths) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    qtbot.waitUntil(lambda: window.engine_manager.engine_pid is not None, timeout=REPLY_TIMEOUT_MS)
    qtbot.waitUntil(lambda: window.engine_manager.loaded_model is not None, timeout=REPLY_TIMEOUT_MS)
    pid = window.engine_manager.engine_pid
    assert pid is not None
    window.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_model_deleted_while_loaded_is_explained_and_the_chat_kept(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.max_tokens.setValue(5)
    send(qtbot, window, "First question")
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)

    (tiny_library_paths.models / "tiny-chat.gguf").unlink()
    window.engine_manager.shutdown()  # the engine had the file mapped; a fresh one must open it again
    send(qtbot, window, "Second question")
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)

    assert "no longer exists" in window.error_banner.text() and window.error_banner.isVisible()
    assert "First question" in window.chat_view.toPlainText()


def test_text_size_follows_ctrl_plus_and_minus_and_is_kept(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    base = QApplication.font().pointSizeF()
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)  # shortcuts reach the active window only
    for _ in range(3):
        QTest.keyClick(window, Qt.Key.Key_Plus, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(window, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.font().pointSizeF() == pytest.approx(base * 1.2)
    window.close()
    assert load_settings(tiny_library_paths.config).ui_scale == pytest.approx(1.2)

    again = build_window(tiny_library_paths)  # with the settings as the first window left them
    qtbot.addWidget(again)
    close_windows.append(again)
    again.show()
    assert QApplication.font().pointSizeF() == pytest.approx(base * 1.2)
    again.activateWindow()
    qtbot.waitUntil(again.isActiveWindow)
    QTest.keyClick(again, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.font().pointSizeF() == pytest.approx(base)


def test_every_control_has_a_name_a_screen_reader_can_say(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.discover_button.click()  # built on first use: its controls count too
    window.local_api_button.click()
    unnamed = []
    for widget in window.findChildren(QWidget):
        if isinstance(widget, QAbstractButton):
            named = bool(widget.text() or widget.accessibleName())
        elif isinstance(widget, (QLineEdit, QPlainTextEdit, QTextEdit, QComboBox, QAbstractSpinBox, QAbstractItemView)):
            named = bool(widget.accessibleName())
        else:
            continue
        inner = (QComboBox, QAbstractSpinBox, QAbstractItemView, QLineEdit)  # parts of a named control
        if not named and widget.window() is window and not isinstance(widget.parent(), inner):
            unnamed.append(f"{type(widget).__name__} {widget.toolTip()[:30]!r} in {type(widget.parent()).__name__}")
    assert unnamed == [], "\n".join(unnamed)
