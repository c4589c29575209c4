"""The token view as a teacher uses it: Ctrl+T, a reply token by token coloured by probability, the alternatives at a
token as a bar chart, and "what if it had said this instead?" as a new version of the reply."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QFont, QTextCharFormat, QTextCursor
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from localai_app.core.conversations import Message
from localai_app.core.paths import AppPaths
from localai_app.core.replies import SamplingOptions, TokenChoice, TokenProbability
from localai_app.ui.main_window import MainWindow
from localai_app.ui.token_view import (
    ALTERNATIVES,
    CHOSEN_MARK,
    CHOSEN_MARKER,
    CHOSEN_NOTE,
    NO_STORED_TOKENS,
    PANE_UPDATE_MS,
    REFRESH_SHARE,
    TokenView,
    is_sampled,
    probability_colour,
    refresh_interval,
)
from tests.gui.conftest import open_window

pytestmark = [
    pytest.mark.gui,
    # The pinned chart is a popup, which the offscreen platform cannot raise or give the keyboard to; a desktop can.
    pytest.mark.qt_log_ignore("This plugin does not support (raise|grabbing the keyboard)"),
]
REPLY_TIMEOUT_MS = 60_000
SEED = 1234


def start(qtbot: QtBot, paths: AppPaths, close_windows: list[MainWindow]) -> tuple[MainWindow, list[SamplingOptions]]:
    """The tiny chat model's window, with a fixed seed and short replies; the sampling of each request it sends."""
    window = open_window(qtbot, paths, "tiny-chat")
    close_windows.append(window)
    window.resize(1400, 900)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)  # shortcuts reach the active window only
    window.max_tokens.setValue(24)
    window.seed.setValue(SEED)
    sent: list[SamplingOptions] = []
    window.generate_requested.connect(lambda model, prompt, sampling, chat: sent.append(sampling))
    return window, sent


def ask(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.prompt_box.setPlainText(text)
    window.send_button.click()
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)


def test_token_view_colours_each_token_and_charts_its_alternatives(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window, sent = start(qtbot, tiny_library_paths, close_windows)
    QTest.keyClick(window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    assert window.token_button.isChecked() and window.token_pane.isVisible()
    ask(qtbot, window, "Hello there")
    assert sent[-1].top_logprobs == ALTERNATIVES
    view = window.token_view
    qtbot.waitUntil(lambda: view.toPlainText() != "")
    conversation = window.session.conversation_id
    assert conversation is not None
    stored = window.session.store.thread(conversation)[-1]
    assert stored.stats is not None and len(view.tokens) == stored.stats["completion_tokens"] > 0
    for position, token in enumerate(view.tokens):  # each token shown in its colour, as a link to its chart
        cursor = QTextCursor(view.document())
        cursor.setPosition(view._starts[position] + 1)
        shown = cursor.charFormat()
        assert shown.background().color() == probability_colour(token.probability)
        assert shown.anchorHref() == f"token:{position}"

    rect = view.token_rect(0)
    QTest.mouseMove(view.viewport(), rect.center())
    qtbot.waitUntil(view.chart.isVisible)
    assert not view.chart.pinned and view.chart.position == 0
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: view.chart.pinned and view.chart.isVisible())
    rows = view.chart.rows
    probabilities = [row.probability for row in rows]
    assert 0 < len(rows) <= ALTERNATIVES
    assert probabilities == sorted(probabilities, reverse=True) and math.fsum(probabilities) <= 1 + 1e-6
    assert view.chart.token is view.tokens[0]
    window.grab().save(str(tmp_path / "token-view.png"))
    view.chart.grab().save(str(tmp_path / "token-chart.png"))
    print("screenshots in", tmp_path)


def test_token_view_off_asks_for_no_probabilities(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window, sent = start(qtbot, tiny_library_paths, close_windows)
    ask(qtbot, window, "Hello there")
    assert sent[-1].top_logprobs is None and not window.token_pane.isVisible()
    assert window.token_view.tokens == [] and window.chat_view.reply_so_far()


def branch_by_click(qtbot: QtBot, window: MainWindow) -> tuple[Message, int, str, TokenChoice]:
    """Clicks an alternative to a token of the reply on show, as a user does, and waits for the branch to finish.
    Returns the original reply, the token's position, the reply's text before it, and the alternative."""
    view = window.token_view
    original = window.session.store.thread(window.session.conversation_id or 0)[-1]
    position = next(
        index for index in range(1, len(view.tokens)) if original.content.startswith(view.text_before(index + 1))
    )
    before = view.text_before(position)
    view.show_alternatives(position, pinned=True)
    qtbot.waitUntil(view.chart.isVisible)
    row = next(index for index, choice in enumerate(view.chart.rows) if not is_sampled(choice, view.tokens[position]))
    alternative = view.chart.rows[row]
    height = view.chart._row_height()
    QTest.mouseClick(view.chart, Qt.MouseButton.LeftButton, pos=QPoint(20, 6 + (row + 1) * height + height // 2))
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)
    return original, position, before, alternative


def format_at(view: TokenView, position: int) -> QTextCharFormat:
    cursor = QTextCursor(view.document())
    cursor.setPosition(view._starts[position] + 1)
    return cursor.charFormat()


def test_an_alternative_token_branches_the_reply_deterministically(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window, _ = start(qtbot, tiny_library_paths, close_windows)
    window.token_button.click()
    ask(qtbot, window, "Hello there")
    original, _, before, alternative = branch_by_click(qtbot, window)
    window.grab().save(str(tmp_path / "what-if.png"))

    thread = window.session.store.thread(original.conversation_id)
    branch = thread[-1]
    assert branch.id != original.id and branch.parent_id == original.parent_id
    assert branch.content.startswith(before + alternative.token) and branch.state == "complete"
    assert window.session.versions(branch.id) == (2, 2)
    assert window.session.store.get_message(original.id).content == original.content  # the original stays
    assert "◀" in window.chat_view.toPlainText() and "2/2" in window.chat_view.toPlainText()

    window.act_on_message("branch", original.id, before, alternative.token)  # the same what-if again
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)
    again = window.session.store.thread(original.conversation_id)[-1]
    assert again.id != branch.id and again.content == branch.content  # same seed, same continuation


def test_a_reopened_conversation_shows_its_stored_tokens_and_the_chosen_one(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window, _ = start(qtbot, tiny_library_paths, close_windows)
    window.token_button.click()
    ask(qtbot, window, "Hello there")
    _, position, _, alternative = branch_by_click(qtbot, window)
    view = window.token_view
    assert view.chosen == {position} and view.tokens[position].token == alternative.token
    assert len(view.tokens) > position + 1  # the model went on from the chosen token
    streamed = [(token.token, round(token.logprob, 4), len(token.alternatives)) for token in view.tokens]

    window.new_conversation()
    assert view.tokens == [] and view.toPlainText() == ""
    conversation = window.session.store.list_conversations()[0].id
    window.open_conversation(conversation)
    assert [(token.token, token.logprob, len(token.alternatives)) for token in view.tokens] == streamed
    assert view.chosen == {position} and view.can_branch
    for shown in range(len(view.tokens)):  # the chosen token marked, and only it
        marked = format_at(view, shown)
        assert (marked.fontWeight() == QFont.Weight.Bold) == (shown == position)
        assert (marked.underlineColor() == CHOSEN_MARK) == (shown == position)
        assert (CHOSEN_NOTE in marked.toolTip()) == (shown == position)
    assert view.toPlainText().count(CHOSEN_MARKER) == 1
    assert view.document().characterAt(view._starts[position] - 1) == CHOSEN_MARKER
    QTest.mouseMove(view.viewport(), view.token_rect(position).center())
    qtbot.waitUntil(view.chart.isVisible)
    assert view.chart.picked_by_user and CHOSEN_NOTE in view.chart._title()
    window.token_pane.grab().save(str(tmp_path / "reopened-token-pane.png"))
    view.chart.grab().save(str(tmp_path / "reopened-chosen-chart.png"))
    QTest.mouseMove(view.viewport(), view.token_rect(0).center())
    qtbot.waitUntil(lambda: view.chart.position == 0)
    assert not view.chart.picked_by_user
    print("screenshots in", tmp_path)

    window.token_button.click()  # off: the next reply keeps no probabilities, and the view says so when reopened
    ask(qtbot, window, "And then?")
    window.new_conversation()
    window.open_conversation(conversation)
    assert view.tokens == [] and view.placeholderText() == NO_STORED_TOKENS


def test_refreshes_come_less_often_once_they_would_cost_more_than_their_share() -> None:
    assert refresh_interval(0.4) == PANE_UPDATE_MS  # a short reply: 10 refreshes a second
    assert refresh_interval(PANE_UPDATE_MS * REFRESH_SHARE) == PANE_UPDATE_MS
    assert refresh_interval(3.6) == 180  # 2 % of the time: 3.6 ms every 180 ms
    assert refresh_interval(18.0) == 900


def test_each_refresh_sets_the_next_from_what_it_cost_and_a_new_reply_starts_over(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    costs: list[float] = []

    def recorded_interval(cost_ms: float) -> int:
        costs.append(cost_ms)
        return PANE_UPDATE_MS + len(costs)

    monkeypatch.setattr("localai_app.ui.token_view.refresh_interval", recorded_interval)
    view = TokenView()
    qtbot.addWidget(view)
    view.resize(500, 300)
    view.show()
    qtbot.waitExposed(view)
    alternatives = [TokenChoice(f" other{index}", -2.0 - index, 100 + index) for index in range(3)]
    for refreshes in range(1, 4):
        view.append_tokens([TokenProbability(f" word{refreshes}", -0.5, alternatives, refreshes)])
        view.flush()
        qtbot.waitUntil(lambda: len(costs) == refreshes)  # noqa: B023  # the paint that shows this refresh
        assert costs[-1] > 0
        assert view._flush_timer.interval() == PANE_UPDATE_MS + refreshes
    view.begin()
    assert view._flush_timer.interval() == PANE_UPDATE_MS
