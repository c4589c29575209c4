from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from localai_app.app import build_window
from localai_app.core.paths import AppPaths
from localai_app.core.settings import Settings, save_settings
from localai_app.ui.main_window import MainWindow

pytestmark = pytest.mark.gui


def open_window(qtbot: QtBot, paths: AppPaths, model_name: str) -> MainWindow:
    settings = Settings(last_model=model_name)
    save_settings(paths.config, settings)
    window = build_window(paths)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: getattr(window.current_model(), "name", None) == model_name)
    return window


def presenting_window(qtbot: QtBot, paths: AppPaths, prompt: str) -> tuple[MainWindow, float]:
    """The tiny chat model's window with `prompt` typed, put in presenter mode by F5, and its font size before."""
    window = open_window(qtbot, paths, "tiny-chat")
    window.prompt_box.setPlainText(prompt)
    everyday = window.font().pointSizeF()
    QTest.keyClick(window, Qt.Key.Key_F5)
    assert window.presenting
    return window, everyday


@pytest.fixture
def close_windows() -> Iterator[list[MainWindow]]:
    windows: list[MainWindow] = []
    yield windows
    for window in windows:
        window.close()
