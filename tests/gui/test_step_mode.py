"""Step mode on the real engine and the tiny chat model: one token per key press, the text being the engine's
detokenized ids, the chart the distribution each token was drawn from, a clicked candidate taken instead, a fixed
seed stepping the same reply again, presenter mode, a stepped reply kept in the conversation, and one sentence from a
server without /completion. Screenshots are saved under the test's tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from localai_app.core.paths import AppPaths
from localai_app.ui.main_window import MainWindow
from localai_app.ui.step_mode import StepMode
from tests.gui.conftest import open_window, presenting_window
from tests.gui.test_glass_box_gui import TIMEOUT_MS, press
from tests.gui.test_sampling_lab import NO_APPLY_TEMPLATE, on_server_without_glass_box

pytestmark = pytest.mark.gui


def open_step_mode(qtbot: QtBot, window: MainWindow) -> StepMode:
    press(qtbot, window, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    step_mode = window.step_mode
    assert step_mode is not None and step_mode.isVisible() and step_mode.parent() is window
    qtbot.waitUntil(lambda: not step_mode.busy, timeout=TIMEOUT_MS)
    return step_mode


def step(qtbot: QtBot, step_mode: StepMode, key: Qt.Key = Qt.Key.Key_Space) -> None:
    before = len(step_mode.taken)
    QTest.keyClick(step_mode, key)
    qtbot.waitUntil(lambda: len(step_mode.taken) == before + 1 and not step_mode.busy, timeout=TIMEOUT_MS)


def shown_text(qtbot: QtBot, step_mode: StepMode, expected: str) -> None:
    qtbot.waitUntil(lambda: step_mode.text_box.toPlainText() == expected, timeout=TIMEOUT_MS)


def test_a_reply_one_token_per_key_press(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.settings_panel.seed.setValue(11)
    window.prompt_box.setPlainText("Name a colour.")
    step_mode = open_step_mode(qtbot, window)
    assert "Press Space or →" in step_mode.heading.text()
    for key in (Qt.Key.Key_Space, Qt.Key.Key_Right, Qt.Key.Key_Space):
        step(qtbot, step_mode, key)
    model = window.current_model()
    assert model is not None
    client = window.worker.client_for(model)
    shown_text(qtbot, step_mode, client.detokenize(step_mode.taken))
    # The chart is the distribution the last token was drawn from, that token marked and drawable.
    chart = step_mode.chart
    assert chart.drawn == step_mode.taken[-1]
    assert chart.drawn in [candidate.choice.id for candidate in chart.distribution.drawable]
    assert step_mode.grab().save(str(tmp_path / "step-mode.png"))

    # The same seed steps the same reply again.
    stepped = list(step_mode.taken)
    step_mode.restart_button.click()
    qtbot.waitUntil(lambda: not step_mode.busy and step_mode.taken == [], timeout=TIMEOUT_MS)
    for _ in stepped:
        step(qtbot, step_mode)
    assert step_mode.taken == stepped

    # Another candidate clicked in the chart is taken instead, and the reply goes on from it.
    other = next(row for row, c in enumerate(chart.charted()) if c.choice.id != chart.drawn)
    picked = chart.charted()[other].choice.id
    y = 4 + (other + 1) * chart._row_height() + chart._row_height() // 2
    QTest.mouseClick(chart, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(40, y))
    assert step_mode.taken[-1] == picked and chart.drawn == picked
    step(qtbot, step_mode)
    assert step_mode.taken[:-1] == [*stepped[:-1], picked]
    shown_text(qtbot, step_mode, client.detokenize(step_mode.taken))
    step_mode.close()


def test_it_opens_above_presenter_mode_at_its_text_size(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window, normal = presenting_window(qtbot, tiny_library_paths, "Name a colour.")
    close_windows.append(window)
    step_mode = open_step_mode(qtbot, window)
    assert step_mode.isWindow() and step_mode.font().pointSizeF() > normal
    step(qtbot, step_mode)
    step(qtbot, step_mode)
    assert step_mode.chart.rows() >= 4
    assert step_mode.chart.drawn in [candidate.choice.id for candidate in step_mode.chart.charted()]  # always shown
    model = window.current_model()
    assert model is not None
    shown_text(qtbot, step_mode, window.worker.client_for(model).detokenize(step_mode.taken))
    assert step_mode.grab().save(str(tmp_path / "step-mode-presenting.png"))
    step_mode.close()


def test_a_stepped_reply_is_kept_in_the_conversation(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.settings_panel.seed.setValue(11)
    window.prompt_box.setPlainText("Name a colour.")
    step_mode = open_step_mode(qtbot, window)
    assert not step_mode.keep_button.isEnabled()  # nothing stepped yet
    for _ in range(5):
        step(qtbot, step_mode)
    model = window.current_model()
    assert model is not None
    client = window.worker.client_for(model)
    # The third token clicked in place of the one drawn, as the token view's what-if marks a token chosen by you.
    step_mode.restart_button.click()
    qtbot.waitUntil(lambda: not step_mode.busy and step_mode.taken == [], timeout=TIMEOUT_MS)
    for _ in range(3):
        step(qtbot, step_mode)
    other = next(c.choice for c in step_mode.chart.charted() if c.choice.id != step_mode.chart.drawn)
    step_mode.take(other)
    step(qtbot, step_mode)
    step(qtbot, step_mode)
    stepped = list(step_mode.taken)
    assert len(stepped) == 5 and stepped[2] == other.id
    step_mode.keep_button.click()
    qtbot.waitUntil(lambda: not step_mode.isVisible(), timeout=TIMEOUT_MS)

    # The message written and the stepped reply are the conversation now, as if sent; the box is empty again.
    conversation = window.session.conversation_id
    assert conversation is not None and window.prompt_box.toPlainText() == ""
    store = window.session.store
    question, reply = store.thread(conversation)
    assert (question.role, question.content) == ("user", "Name a colour.")
    assert (reply.role, reply.state, reply.content) == ("assistant", "complete", client.detokenize(stepped))
    assert reply.model == model.name and reply.settings is not None and reply.settings.seed == 11
    assert reply.stats is not None and reply.stats["stepped"] and reply.stats["completion_tokens"] == 5
    kept = store.reply_tokens(reply.id)
    assert kept is not None and [token.id for token in kept.tokens] == stepped and kept.chosen == {2}
    assert "5 tokens stepped one at a time, 1 chosen by you" in window.chat_view.toPlainText()

    # With no message written, step mode answers the last question again: kept, it is a new version of the answer.
    step_mode = open_step_mode(qtbot, window)
    step(qtbot, step_mode)
    step(qtbot, step_mode)
    again = list(step_mode.taken)
    step_mode.keep_button.click()
    qtbot.waitUntil(lambda: not step_mode.isVisible(), timeout=TIMEOUT_MS)
    newer = store.thread(conversation)[-1]
    assert [version.id for version in store.siblings(newer.id)] == [reply.id, newer.id]
    assert newer.content == client.detokenize(again) and "◀ 2/2 ▶" in window.chat_view.toPlainText()
    window.close()

    # Reopened in a new window: the stepped reply is there, with its tokens in the token view.
    reopened = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(reopened)
    reopened.open_conversation(conversation)
    assert "2 tokens stepped one at a time" in reopened.chat_view.toPlainText()
    assert [token.id for token in reopened.token_view.tokens] == again
    assert reopened.grab().save(str(tmp_path / "kept-reply.png"))


def test_a_server_without_completion_gets_one_sentence(
    qtbot: QtBot,
    tiny_library_paths: AppPaths,
    llama_cpp_server: tuple[str, subprocess.Popen[bytes]],
    close_windows: list[MainWindow],
) -> None:
    window = on_server_without_glass_box(qtbot, tiny_library_paths, llama_cpp_server[0], close_windows)
    step_mode = open_step_mode(qtbot, window)
    assert step_mode.heading.text() == NO_APPLY_TEMPLATE  # and nothing steps:
    QTest.keyClick(step_mode, Qt.Key.Key_Space)
    assert step_mode.taken == [] and not step_mode.busy and not step_mode.keep_button.isEnabled()
    step_mode.close()
