"""The glass box's dialogs on the real engine and tiny models: the prompt inspector shows what the engine feeds
llama.cpp, the tokenizer playground shows the engine's tokens and compares two models, and a server without
llama-server's routes gets one sentence. Screenshots are saved under the test's tmp_path for a person to look at."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from localai_app.core.context import Prompt
from localai_app.core.library import ModelInfo
from localai_app.core.paths import AppPaths
from localai_app.core.replies import ReplyStream, SamplingOptions
from localai_app.ui.main_window import MainWindow
from localai_app.ui.prompt_inspector import PromptInspector
from localai_app.ui.tokenizer_playground import TokenizerPlayground
from tests.gui.conftest import open_window, presenting_window
from tests.gui.test_remote_servers import add_server, picker_names, send

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000


def press(qtbot: QtBot, window: MainWindow, key: Qt.Key, modifiers: Qt.KeyboardModifier) -> None:
    window.activateWindow()  # a window's shortcut needs it active: a dialog may have been until now
    qtbot.waitUntil(window.isActiveWindow)
    QTest.keyClick(window, key, modifiers)


def open_playground(qtbot: QtBot, window: MainWindow) -> TokenizerPlayground:
    press(qtbot, window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    playground = window.tokenizer_playground
    assert playground is not None and playground.isVisible() and playground.parent() is window
    return playground


def inspect(qtbot: QtBot, window: MainWindow) -> PromptInspector:
    press(qtbot, window, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
    inspector = window.prompt_inspector
    assert inspector is not None and inspector.isVisible()
    qtbot.waitUntil(lambda: not inspector.busy, timeout=TIMEOUT_MS)
    return inspector


def test_inspector_shows_the_chat_prompt_the_engine_feeds_llama_cpp(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.max_tokens.setValue(4)
    send(qtbot, window, "Name a colour.")
    window.prompt_box.setPlainText("And another?")  # being written: the inspector shows it as the next turn
    inspector = inspect(qtbot, window)
    inspection = inspector.inspection
    assert inspection is not None and inspection.chat
    model = window.current_model()
    assert model is not None
    client = window.worker.client_for(model)
    conversation = window.session.conversation_id
    assert conversation is not None
    first, reply = window.session.store.thread(conversation)
    messages = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": reply.content},
        {"role": "user", "content": "And another?"},
    ]
    assert inspection.text == client.apply_template(messages)
    assert inspector.text_box.toPlainText() == inspection.text
    assert inspection.text.startswith("<|im_start|>user\nName a colour.<|im_end|>\n")
    assert [token.id for token in inspection.tokens] == client.tokenize(inspection.text, with_pieces=False)
    assert inspector.tokens.table.rowCount() == len(inspection.tokens)
    assert inspection.context_length == 512 or inspection.context_length == client.count_tokens(messages)[1]
    assert f"{len(inspection.tokens):,} of {inspection.context_length:,} context tokens" in (
        inspector.context_bar.format()
    )
    template = inspector.template_label.text()
    assert "SHA-256: " in template and len(template.rsplit(" ", 1)[1]) == 64
    assert "{% for message in messages %}" in inspector.template_box.toPlainText()
    assert inspector.grab().save(str(tmp_path / "inspector-chat.png"))

    # Sending it: the engine read as many tokens as the inspector showed.
    window.send_button.click()
    qtbot.waitUntil(window.send_button.isEnabled, timeout=TIMEOUT_MS)
    thread = window.session.store.thread(conversation)
    assert thread[-1].stats is not None and thread[-1].stats["prompt_tokens"] == len(inspection.tokens)
    assert first.content == "Name a colour."


def test_inspector_shows_the_prompt_after_the_oldest_turns_are_left_out(
    qtbot: QtBot,
    tiny_library_paths: AppPaths,
    close_windows: list[MainWindow],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")  # a 512-token context, a token per byte
    close_windows.append(window)
    window.max_tokens.setValue(8)
    backends = window.worker._backends
    sent: list[Prompt] = []  # what the worker hands the engine, recorded on its way there

    def stream(model: ModelInfo, prompt: Prompt, sampling: SamplingOptions) -> ReplyStream:
        sent.append(prompt)
        return real_stream(model, prompt, sampling)

    real_stream = backends.stream
    monkeypatch.setattr(backends, "stream", stream)
    send(qtbot, window, "a" * 160)
    send(qtbot, window, "b" * 160)
    window.prompt_box.setPlainText("c" * 160)  # with it, the first exchange no longer fits
    inspector = inspect(qtbot, window)
    inspection = inspector.inspection
    assert inspection is not None and inspection.left_out == 2
    assert "The 2 earliest messages are left out to fit the context" in inspector.heading.text()
    assert "a" * 160 not in inspection.text and inspection.text.count("<|im_start|>user") == 2
    assert inspector.grab().save(str(tmp_path / "inspector-trimmed.png"))

    window.send_button.click()
    qtbot.waitUntil(window.send_button.isEnabled, timeout=TIMEOUT_MS)
    assert "The 2 oldest messages were left out" in window.error_banner.text()
    model = window.current_model()
    assert model is not None and isinstance(sent[-1], list)
    fed = window.worker.client_for(model).apply_template(sent[-1])  # the engine's own rendering of what it got
    assert fed.encode("utf-8") == inspection.text.encode("utf-8")  # byte for byte
    conversation = window.session.conversation_id
    assert conversation is not None
    stats = window.session.store.thread(conversation)[-1].stats
    assert stats is not None and stats["prompt_tokens"] == len(inspection.tokens)


def test_inspector_shows_the_completion_prompt_of_a_model_without_a_template(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-base")
    close_windows.append(window)
    text = "Once upon a time <s> there"  # a look-alike special token stays text in a completion prompt
    window.prompt_box.setPlainText(text)
    inspector = inspect(qtbot, window)
    inspection = inspector.inspection
    assert inspection is not None and not inspection.chat and inspection.text == text
    # BOS, added by the tokenizer, is the only special token; the typed <s> is three characters.
    assert [token.special for token in inspection.tokens] == [True] + [False] * (len(inspection.tokens) - 1)
    assert "no chat template" in inspector.template_label.text() and not inspector.template_box.toPlainText()
    assert inspector.grab().save(str(tmp_path / "inspector-completion.png"))

    window.max_tokens.setValue(4)
    window.send_button.click()
    qtbot.waitUntil(window.send_button.isEnabled, timeout=TIMEOUT_MS)
    conversation = window.session.conversation_id
    assert conversation is not None
    stats = window.session.store.thread(conversation)[-1].stats
    assert stats is not None and stats["prompt_tokens"] == len(inspection.tokens)


def test_inspector_with_nothing_to_show_says_why(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    inspector = inspect(qtbot, window)
    assert inspector.inspection is None and inspector.heading.text().startswith("Write a message first")


def test_playground_tokenizes_live_and_compares_two_models(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    playground = open_playground(qtbot, window)
    text = "Hi <s> é"
    playground.text_box.setPlainText(text)
    model = window.current_model()
    assert model is not None
    expected = window.worker.client_for(model).tokenize(text)
    qtbot.waitUntil(lambda: playground.first.tokens is not None and len(playground.first.tokens) == len(expected))
    assert playground.first.tokens is not None
    assert [(token.id, token.piece) for token in playground.first.tokens] == expected
    assert [token.special for token in playground.first.tokens].count(True) == 1  # <s>, read as the token
    summary = playground.first.strip.summary.text()
    assert summary.startswith(f"{len(expected)} tokens, 1 special · {len(text)} characters · ")
    assert f"{len(text) / len(expected):.2f} characters per token" in summary

    playground.compare_with("tiny-base")
    second = playground.second
    qtbot.waitUntil(lambda: second.tokens is not None, timeout=TIMEOUT_MS)
    assert second.tokens is not None
    # The same byte vocabulary, read by a vocabulary-only engine: the same tokens, and the chat's engine kept its model.
    assert [(token.id, token.piece) for token in second.tokens] == expected
    assert getattr(window.engine_manager.loaded_model, "name", None) == "tiny-chat"
    first_engine = playground._second
    assert first_engine is not None
    assert playground.grab().save(str(tmp_path / "playground.png"))

    QTest.keyClick(playground, Qt.Key.Key_Escape)
    assert not playground.isVisible()
    qtbot.waitUntil(lambda: first_engine._process is None, timeout=10_000)  # its engine stopped

    # Opened again, it compares with the same model; closing the window stops that engine too.
    playground = open_playground(qtbot, window)
    qtbot.waitUntil(lambda: playground.second.tokens is not None, timeout=TIMEOUT_MS)
    engine = playground._second
    assert engine is not None and engine.model.name == "tiny-base"
    window.close()
    close_windows.remove(window)
    assert engine._process is None


def test_a_server_without_the_routes_gets_one_sentence(
    qtbot: QtBot,
    tiny_library_paths: AppPaths,
    llama_cpp_server: tuple[str, subprocess.Popen[bytes]],
    close_windows: list[MainWindow],
    tmp_path: Path,
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    dialog = add_server(qtbot, window, "lab", llama_cpp_server[0], test_says="Connected")
    qtbot.waitUntil(lambda: "tiny-chat @ lab" in picker_names(window), timeout=10_000)
    dialog.close()
    window.model_picker.setCurrentIndex(picker_names(window).index("tiny-chat @ lab"))
    window.prompt_box.setPlainText("Hello")
    inspector = inspect(qtbot, window)
    sentence = "The server lab does not offer /apply-template, so the prompt its model reads cannot be shown."
    assert inspector.heading.text() == sentence and inspector.inspection is None
    assert inspector.tabs.isHidden() and inspector.context_bar.isHidden()  # nothing half-shown beside it
    assert inspector.grab().save(str(tmp_path / "inspector-no-routes.png"))

    playground = open_playground(qtbot, window)
    said = "The server lab does not offer /tokenize, so its tokens cannot be shown."
    qtbot.waitUntil(lambda: playground.first.strip.summary.text() == said, timeout=TIMEOUT_MS)
    playground.close()


def test_both_open_above_presenter_mode_at_its_text_size(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window, normal = presenting_window(qtbot, tiny_library_paths, "Hello")
    close_windows.append(window)
    inspector = inspect(qtbot, window)
    assert inspector.isWindow() and inspector.parent() is window
    assert inspector.font().pointSizeF() > normal  # the presenter scale, not a fixed size
    assert inspector.tokens.text_view.font().pointSizeF() == inspector.font().pointSizeF()
    assert inspector.grab().save(str(tmp_path / "inspector-presenting.png"))
    inspector.close()
    playground = open_playground(qtbot, window)
    qtbot.waitUntil(lambda: playground.first.tokens is not None, timeout=TIMEOUT_MS)
    assert playground.grab().save(str(tmp_path / "playground-presenting.png"))
    playground.close()
