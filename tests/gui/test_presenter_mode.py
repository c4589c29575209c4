"""Presenter mode as a teacher uses it: F5 on a projector, large high-contrast text, a big Stop, and back."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt, QUrl
from PySide6.QtGui import QColor, QFontMetrics, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QSplitter, QWidget
from pytestqt.qtbot import QtBot

from localai_app.app import build_window
from localai_app.core.paths import AppPaths
from localai_app.core.settings import DEFAULT_PRESENTER_SCALE, load_settings
from localai_app.ui.main_window import MainWindow
from localai_app.ui.markdown_render import ACTION_SCHEME
from tests.gui.conftest import open_window

pytestmark = pytest.mark.gui
REPLY_TIMEOUT_MS = 60_000
PROJECTOR = (1920, 1080)
MIN_BODY_TEXT_PX = 28  # the bar for text read from the back of a classroom
LESSON = [
    {"role": "user", "content": "Why does a language model sometimes make things up?"},
    {
        "role": "assistant",
        "content": (
            "A language model predicts the **next token** from the text so far. It has no lookup of facts: when a "
            "wrong continuation is likely enough, it writes it just as fluently as a true one.\n\n"
            "- Lower temperature makes the likeliest token win more often.\n"
            "- A fixed seed makes a reply repeatable."
        ),
    },
]


def activate(qtbot: QtBot, window: MainWindow) -> None:
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)  # shortcuts reach the active window only


def layout_of(window: MainWindow) -> tuple[object, ...]:
    """Everything presenter mode changes and must put back."""
    central = window.centralWidget()
    assert isinstance(central, QSplitter)
    shown = tuple(widget.isVisible() for widget in window.findChildren(QWidget))
    return (window.windowState(), window.geometry(), central.sizes(), shown, QApplication.font().pointSizeF())


def test_f5_presents_and_f5_or_esc_puts_the_window_back(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    activate(qtbot, window)
    window.library_button.click()  # a panel open before presenting is open again after
    window.settings_button.click()
    window.resize(1800, 900)  # wide enough for the panels' smallest sizes, which the window enforces once it relays out
    # The preload and the library listing show and hide widgets when they finish: let them finish first, so the
    # comparison sees only what presenter mode did.
    qtbot.waitUntil(lambda: window.engine_manager.loaded_model is not None, timeout=REPLY_TIMEOUT_MS)
    qtbot.wait(500)
    before = layout_of(window)

    for leave in (Qt.Key.Key_Escape, Qt.Key.Key_F5):
        QTest.keyClick(window, Qt.Key.Key_F5)
        assert window.presenting and window.present_button.isChecked()
        assert window.windowState() & Qt.WindowState.WindowFullScreen
        hidden = [window.sidebar, window.settings_panel, window.library_panel, window.hardware_panel]
        hidden += [window.library_button, window.discover_button, window.local_api_button, window.settings_button]
        assert not any(widget.isVisible() for widget in hidden)
        assert window.model_picker.isVisible() and window.model_picker.isEnabled()  # the teacher may switch models
        assert window.stop_button.isVisible() and window.present_button.isVisible()
        assert window.stop_button.height() >= 2 * window.send_button.fontMetrics().height()  # big
        assert window.stop_button.height() > window.send_button.height()
        QTest.keyClick(window, leave)
        assert not window.presenting and not window.present_button.isChecked()
        QApplication.processEvents()
        assert layout_of(window) == before
        assert window.library_panel.isVisible() and window.settings_panel.isVisible()


def test_presenting_at_1920x1080_body_text_is_at_least_28_px(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.open_conversation(window.session.store.import_openai_messages(LESSON, "Why models make things up"))
    window.set_presenting(True)
    qtbot.waitUntil(window.chat_view.isVisible)
    QApplication.processEvents()  # full screen first: on the offscreen platform, its small virtual screen
    window.resize(*PROJECTOR)
    qtbot.waitUntil(lambda: window.chat_view.viewport().width() > PROJECTOR[0] * 0.8)
    window.chat_view.verticalScrollBar().setValue(0)
    QApplication.processEvents()

    body = window.chat_view.document().defaultFont()
    pixels = body.pointSizeF() * window.chat_view.logicalDpiY() / 72
    assert pixels >= MIN_BODY_TEXT_PX and QFontMetrics(body).height() >= MIN_BODY_TEXT_PX

    image = window.grab().toImage()
    assert (image.width(), image.height()) == PROJECTOR
    assert image.save(str(tmp_path / "presenter.png"))  # for a person to look at
    # The ink of rendered body text, from the top of its "A" and "l" to the bottom of its "g" and "p".
    found = window.chat_view.document().find("A language model predicts")
    assert not found.isNull()
    end = window.chat_view.cursorRect(found)  # the line the words are on, up to their end
    top_left = window.chat_view.viewport().mapTo(window, QPoint(0, end.top()))
    right = window.chat_view.viewport().mapTo(window, end.topLeft()).x()
    ink = ink_rows(image, top_left, right, end.height())
    assert ink >= MIN_BODY_TEXT_PX, f"a line of body text is {ink} px high"
    assert contrast(QColor(image.pixel(top_left.x() + 2, top_left.y() + 2)), QColor(Qt.GlobalColor.black)) >= 15


def ink_rows(image: QImage, top_left: QPoint, right: int, height: int) -> int:
    """How many pixel rows, from the first to the last that holds dark text, in a line's box."""
    columns = range(top_left.x(), right)
    rows = range(top_left.y(), top_left.y() + height)
    dark = [y for y in rows if any(QColor(image.pixel(x, y)).lightness() < 100 for x in columns)]
    return dark[-1] - dark[0] + 1 if dark else 0


def contrast(one: QColor, other: QColor) -> float:
    """WCAG contrast ratio (21 for black on white, 7 is the enhanced level for body text)."""

    def luminance(color: QColor) -> float:
        rgb = (color.redF(), color.greenF(), color.blueF())
        red, green, blue = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
        return 0.2126 * red + 0.7152 * green + 0.0722 * blue

    light, dark = sorted((luminance(one), luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_a_reply_streams_and_the_big_stop_ends_it_while_presenting(
    qtbot: QtBot, app_paths: AppPaths, starter_model: Path, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, app_paths, "gemma-3-270m-q4_k_m")  # a real model writes long enough to stop
    close_windows.append(window)
    activate(qtbot, window)
    QTest.keyClick(window, Qt.Key.Key_F5)
    window.max_tokens.setValue(2000)
    window.prompt_box.setPlainText("The history of Rome")
    QTest.keyClick(window.prompt_box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(window.chat_view.reply_so_far()) > 20, timeout=REPLY_TIMEOUT_MS)
    assert window.stop_button.isEnabled()
    red = window.stop_button.grab().toImage().pixelColor(window.stop_button.width() // 2, 6)
    assert red.red() > 150 and red.green() < 60 and red.blue() < 60

    QTest.keyClick(window, Qt.Key.Key_Escape)  # Esc stops the reply first; presenter mode stays
    qtbot.waitUntil(window.send_button.isEnabled, timeout=10_000)
    assert window.presenting and window.stats_label.text().startswith("Stopped after")

    window.prompt_box.setPlainText("The three laws of motion are")
    window.send_button.click()
    qtbot.waitUntil(lambda: bool(window.chat_view.reply_so_far()), timeout=REPLY_TIMEOUT_MS)
    QTest.mouseClick(window.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.send_button.isEnabled, timeout=10_000)
    assert window.stats_label.text().startswith("Stopped after") and window.presenting

    # The message actions stay in reach: regenerate the stopped reply from its link.
    conversation = window.session.conversation_id
    assert conversation is not None
    reply = window.session.store.thread(conversation)[-1]
    window.chat_view.anchorClicked.emit(QUrl(f"{ACTION_SCHEME}:regenerate/{reply.id}"))
    qtbot.waitUntil(lambda: bool(window.chat_view.reply_so_far()), timeout=REPLY_TIMEOUT_MS)
    window.stop_button.click()
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)
    assert len(window.session.store.siblings(reply.id)) == 2

    QTest.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # a new chat, though no sidebar
    assert window.session.conversation_id is None and window.chat_view.toPlainText() == ""
    QTest.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)  # search brings the list back
    assert window.sidebar.isVisible() and window.sidebar.search_box.hasFocus()
    QTest.keyClick(window, Qt.Key.Key_Escape)
    assert not window.presenting


def test_the_presenter_scale_is_its_own_and_is_kept(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    base = QApplication.font().pointSizeF()
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    activate(qtbot, window)
    QTest.keyClick(window, Qt.Key.Key_F5)
    assert QApplication.font().pointSizeF() == pytest.approx(base * DEFAULT_PRESENTER_SCALE)
    QTest.keyClick(window, Qt.Key.Key_Plus, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(window, Qt.Key.Key_Plus, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.font().pointSizeF() == pytest.approx(base * (DEFAULT_PRESENTER_SCALE + 0.2))
    assert window.chat_view.font().pointSizeF() == pytest.approx(base * (DEFAULT_PRESENTER_SCALE + 0.2))
    QTest.keyClick(window, Qt.Key.Key_F5)
    assert QApplication.font().pointSizeF() == pytest.approx(base)  # the everyday size is untouched
    window.close()
    settings = load_settings(tiny_library_paths.config)
    assert settings.presenter_scale == pytest.approx(DEFAULT_PRESENTER_SCALE + 0.2) and settings.ui_scale == 1.0

    again = build_window(tiny_library_paths)  # with the settings as the first window left them
    qtbot.addWidget(again)
    close_windows.append(again)
    again.show()
    assert QApplication.font().pointSizeF() == pytest.approx(base)
    again.set_presenting(True)
    assert QApplication.font().pointSizeF() == pytest.approx(base * (DEFAULT_PRESENTER_SCALE + 0.2))
    activate(qtbot, again)
    QTest.keyClick(again, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)  # back to the default presenter size
    assert QApplication.font().pointSizeF() == pytest.approx(base * DEFAULT_PRESENTER_SCALE)


def test_closing_while_presenting_leaves_the_application_font_as_it_was(
    qtbot: QtBot, tiny_library_paths: AppPaths
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    everyday = QApplication.font().pointSizeF()
    window.set_presenting(True)
    assert QApplication.font().pointSizeF() > everyday
    window.close()
    assert QApplication.font().pointSizeF() == everyday
