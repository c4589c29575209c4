"""Issue #3 in the window: the Hardware panel, the library's fit and speed columns, what a load chose, and a
refused load that the user can insist on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from localai_app.core import hardware
from localai_app.core.engine_manager import EngineManager
from localai_app.core.estimate import Overrides
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.settings import Settings
from localai_app.ui.library_panel import FIT_COLUMN, SPEED_COLUMN
from localai_app.ui.main_window import MainWindow
from tests.gui.conftest import open_window

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000


def cell(window: MainWindow, row: int, column: int) -> str:
    item = window.library_panel.table.item(row, column)
    return item.text() if item is not None else ""


def test_panels_show_the_machine_the_fit_and_the_forecast(
    qtbot: QtBot, app_paths: AppPaths, starter_model: Path, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, app_paths, "gemma-3-270m-q4_k_m")
    close_windows.append(window)
    # The first load measures the bandwidth, then says what it chose and why.
    qtbot.waitUntil(lambda: "Context 8,192" in window.load_label.text(), timeout=TIMEOUT_MS)
    assert f"{hardware.detect(with_build=False).physical_cores} threads" in window.load_label.text()
    assert "one per physical core" in window.load_label.toolTip()

    window.hardware_button.click()
    view = window.hardware_panel.view
    qtbot.waitUntil(lambda: "Speed: about" in view.toPlainText(), timeout=TIMEOUT_MS)
    text = view.toPlainText()
    assert "This machine" in text and "RAM" in text and "llama.cpp build" in text
    assert "Fits: needs" in text and "kv cache" in text

    window.library_button.click()  # the columns were refreshed after the load measured the bandwidth
    qtbot.waitUntil(lambda: cell(window, 0, SPEED_COLUMN).startswith("about"), timeout=TIMEOUT_MS)
    assert cell(window, 0, FIT_COLUMN) == "fits"
    window.resize(1400, 900)
    assert window.grab().save(str(app_paths.logs / "hardware-panel.png"))  # for a person to look at


def test_a_refused_load_explains_and_load_anyway_works(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    starved = replace(hardware.detect(with_build=False), available_ram_bytes=10 * 1024 * 1024)
    manager = EngineManager(Overrides(threads=1), machine=lambda: starved)
    window = MainWindow(tiny_library_paths, Settings(last_model="tiny-chat"), Library(tiny_library_paths), manager)
    qtbot.addWidget(window)
    close_windows.append(window)
    window.show()
    qtbot.waitUntil(window.insist_button.isVisible, timeout=TIMEOUT_MS)
    assert "will not fit" in window.error_banner.text() and "Try " in window.error_banner.text()
    assert manager.engine_pid is None

    window.prompt_box.setPlainText("Hello")
    window.send_button.click()
    qtbot.waitUntil(window.send_button.isEnabled, timeout=TIMEOUT_MS)
    assert "Not sent" in window.chat_view.toPlainText() and window.insist_button.isVisible()

    window.insist_button.click()
    qtbot.waitUntil(lambda: manager.engine_pid is not None, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: "Context" in window.load_label.text(), timeout=TIMEOUT_MS)
    assert "won't fit" in window.load_label.text()
    window.max_tokens.setValue(4)
    window.prompt_box.setPlainText("Hello again")
    window.send_button.click()
    qtbot.waitUntil(window.send_button.isEnabled, timeout=TIMEOUT_MS)
    assert "tokens/s" in window.stats_label.text()
