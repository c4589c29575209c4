"""The sampling lab on the real engine and the tiny chat model: the chart follows the sliders at once (worked out
here), the engine's draw with those settings is marked, a seed reproduces the reply's start, "Run again" changes
it, the settings go into the conversation, and it stays readable in presenter mode. A server without llama-server's
/completion gets one sentence. Screenshots are saved under the test's tmp_path for a person to look at."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from pytestqt.qtbot import QtBot

from localai_app.core.paths import AppPaths
from localai_app.ui.main_window import MainWindow
from localai_app.ui.sampling_lab import ASKED, MIN_CHARTED, SamplingLab
from tests.gui.conftest import open_window, presenting_window
from tests.gui.test_glass_box_gui import TIMEOUT_MS, press
from tests.gui.test_remote_servers import add_server, picker_names

pytestmark = pytest.mark.gui


def open_lab(qtbot: QtBot, window: MainWindow) -> SamplingLab:
    press(qtbot, window, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    lab = window.sampling_lab
    assert lab is not None and lab.isVisible() and lab.parent() is window
    qtbot.waitUntil(lambda: not lab.busy, timeout=TIMEOUT_MS)
    return lab


# llama_cpp.server lacks llama-server's glass-box routes: the first one asked for is named.
NO_APPLY_TEMPLATE = "The server lab does not offer /apply-template, so the prompt its model reads cannot be shown."


def on_server_without_glass_box(
    qtbot: QtBot, paths: AppPaths, server_url: str, close_windows: list[MainWindow]
) -> MainWindow:
    """The window with the tiny chat model on llama_cpp.server (as server "lab") picked and a message written."""
    window = open_window(qtbot, paths, "tiny-chat")
    close_windows.append(window)
    dialog = add_server(qtbot, window, "lab", server_url, test_says="Connected")
    qtbot.waitUntil(lambda: "tiny-chat @ lab" in picker_names(window), timeout=10_000)
    dialog.close()
    window.model_picker.setCurrentIndex(picker_names(window).index("tiny-chat @ lab"))
    window.prompt_box.setPlainText("Hello")
    return window


def settle(qtbot: QtBot, lab: SamplingLab) -> None:
    """Until the engine's draw for the settings shown has come back."""
    qtbot.waitUntil(lambda: lab.chart.drawn_is_current and not lab.busy, timeout=TIMEOUT_MS)


def test_the_chart_follows_the_sliders_and_the_engine_draw_is_marked(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.prompt_box.setPlainText("Name a colour.")
    lab = open_lab(qtbot, window)
    assert lab.continuation is not None and len(lab.alternatives) == ASKED
    candidates = lab.chart.distribution.candidates
    drawable = [candidate.choice.id for candidate in lab.chart.distribution.drawable]
    assert lab.chart.drawn in drawable  # the engine drew one the lab says can be drawn
    assert "With seed" in lab.reply_label.text()

    # Dragging works the chart out here, at once; the engine draws once the sliders rest.
    lab.top_k.setValue(1)
    assert [candidate.choice.id for candidate in lab.chart.distribution.drawable] == [candidates[0].choice.id]
    assert not lab.chart.drawn_is_current and not lab.busy
    settle(qtbot, lab)
    assert lab.chart.drawn == candidates[0].choice.id
    assert lab.grab().save(str(tmp_path / "lab-top-k-1.png"))

    # Nothing cut and a high temperature: the seed decides, and the same seed gives the same start again.
    lab.top_k.setValue(0)
    lab.top_p.setValue(100)
    lab.min_p.setValue(0)
    lab.temperature.setValue(200)
    lab.seed.setValue(5)
    settle(qtbot, lab)
    assert lab.chart.distribution.open_tail  # nothing is cut among the 100 shown: the rest can be drawn too
    first = lab.reply_label.text()
    starts = set()
    for _ in range(4):
        lab.run_again()
        settle(qtbot, lab)
        starts.add(lab.reply_label.text().split(":", 1)[1])
    assert len(starts) > 1
    lab.seed.setValue(5)
    settle(qtbot, lab)
    assert lab.reply_label.text() == first

    lab.temperature.setValue(90)
    lab.top_k.setValue(20)
    lab.top_p.setValue(90)
    lab.min_p.setValue(10)
    settle(qtbot, lab)
    assert lab.grab().save(str(tmp_path / "lab.png"))
    lab.use_button.click()
    settings = window.settings_panel.settings(None)
    assert (settings.temperature, settings.top_k, settings.top_p, settings.min_p, settings.seed) == (
        0.9, 20, 0.9, 0.1, 5
    )  # fmt: skip
    lab.close()


def test_it_opens_above_presenter_mode_at_its_text_size(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window, normal = presenting_window(qtbot, tiny_library_paths, "Name a colour.")
    close_windows.append(window)
    lab = open_lab(qtbot, window)
    settle(qtbot, lab)
    assert lab.isWindow() and lab.font().pointSizeF() > normal
    assert lab.chart.font().pointSizeF() == lab.font().pointSizeF()  # the chart's rows grow with it
    assert lab.grab().save(str(tmp_path / "lab-presenting.png"))
    # As many rows as fit whole, at the larger text size (a 720-pixel-high screen here).
    assert lab.chart.rows() >= MIN_CHARTED and (lab.chart.rows() + 1) * lab.chart._row_height() <= lab.chart.height()
    # On a 1920x1080 projector the controls go beside the chart, which leaves it room for at least 8 rows.
    lab.resize(1920, 1080)
    qtbot.waitUntil(lambda: lab.temperature.mapTo(lab, QPoint(0, 0)).x() > lab.chart.geometry().right())
    assert lab.chart.rows() >= 8
    assert lab.grab().save(str(tmp_path / "lab-presenting-1920.png"))
    lab.close()


def test_a_server_without_completion_gets_one_sentence(
    qtbot: QtBot,
    tiny_library_paths: AppPaths,
    llama_cpp_server: tuple[str, subprocess.Popen[bytes]],
    close_windows: list[MainWindow],
) -> None:
    window = on_server_without_glass_box(qtbot, tiny_library_paths, llama_cpp_server[0], close_windows)
    lab = open_lab(qtbot, window)
    assert lab.heading.text() == NO_APPLY_TEMPLATE
    assert lab.chart.distribution.candidates == [] and lab.reply_label.text() == ""
    lab.close()
