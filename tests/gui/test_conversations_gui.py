"""Conversations in the window: kept in the store as they are written, listed newest first, searched, reopened and
continued, renamed, pinned, deleted with undo; a reply cut short by closing is kept; a damaged file is set aside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from localai_app.core.context import STOP
from localai_app.core.conversations import STORE_FILE, ConversationStore
from localai_app.core.paths import AppPaths
from localai_app.ui.conversation_sidebar import CONVERSATION_ROLE, MESSAGE_ROLE
from localai_app.ui.main_window import MainWindow
from tests.fakes.gguf_builder import CHATML_TEMPLATE, write_tiny_model
from tests.gui.conftest import open_window
from tests.gui.test_main_window import REPLY_TIMEOUT_MS, send

pytestmark = pytest.mark.gui


def exchange(qtbot: QtBot, window: MainWindow, text: str) -> None:
    send(qtbot, window, text)
    qtbot.waitUntil(lambda: bool(window.chat_view.reply_so_far()), timeout=REPLY_TIMEOUT_MS)
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)


def listed(window: MainWindow) -> list[str]:
    items = [window.sidebar.list.item(row) for row in range(window.sidebar.list.count())]
    return [item.text().splitlines()[0] for item in items if item is not None]


def test_conversations_are_kept_listed_searched_and_continued(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.max_tokens.setValue(8)
    exchange(qtbot, window, "Tell me about volcanoes")
    first = window.session.conversation_id
    assert first is not None
    assert listed(window) == ["Tell me about volcanoes"]

    window.sidebar.new_button.click()
    assert window.chat_view.toPlainText() == "" and window.session.conversation_id is None
    exchange(qtbot, window, "Plan a picnic")
    assert listed(window) == ["Plan a picnic", "Tell me about volcanoes"]  # newest first

    window.sidebar.search_box.setText("volcanoes")
    qtbot.waitUntil(lambda: window.sidebar.list.count() == 1 and "«volcanoes»" in window.sidebar.list.item(0).text())
    hit = window.sidebar.list.item(0)
    assert hit.data(CONVERSATION_ROLE) == first and hit.data(MESSAGE_ROLE) is not None
    window.sidebar.list.itemClicked.emit(hit)
    assert window.session.conversation_id == first
    assert "Tell me about volcanoes" in window.chat_view.toPlainText()
    assert "Plan a picnic" not in window.chat_view.toPlainText()

    exchange(qtbot, window, "And in Iceland?")  # continues the reopened conversation, with its history
    store = window.session.store
    assert [message.role for message in store.thread(first)] == ["user", "assistant", "user", "assistant"]
    window.sidebar.search_box.clear()
    qtbot.waitUntil(lambda: listed(window) == ["Tell me about volcanoes", "Plan a picnic"])

    window.sidebar.rename(first, "Volcanoes")
    picnic = store.list_conversations()[1].id
    window.sidebar.toggle_pin(picnic)
    assert listed(window) == ["Plan a picnic", "Volcanoes"]
    assert window.sidebar.list.item(0).text().splitlines()[1].startswith("pinned · ")

    window.sidebar.delete(first)  # the one on show: the window moves to a new chat
    assert listed(window) == ["Plan a picnic"] and window.session.conversation_id is None
    assert window.sidebar.undo_button.isVisible()
    window.sidebar.undo_button.click()
    assert listed(window) == ["Plan a picnic", "Volcanoes"]
    assert window.session.conversation_id == first and "Iceland" in window.chat_view.toPlainText()


def test_closing_mid_reply_keeps_the_text_marked_interrupted(
    qtbot: QtBot, app_paths: AppPaths, starter_model: Path
) -> None:
    window = open_window(qtbot, app_paths, "gemma-3-270m-q4_k_m")
    window.max_tokens.setValue(2000)
    send(qtbot, window, "The history of Rome")
    qtbot.waitUntil(lambda: len(window.chat_view.reply_so_far()) > 40, timeout=REPLY_TIMEOUT_MS)
    conversation = window.session.conversation_id
    assert conversation is not None
    window.close()
    shown = window.chat_view.reply_so_far()

    with ConversationStore(app_paths.data / STORE_FILE) as store:
        question, reply = store.thread(conversation)
    assert question.content == "The history of Rome"
    assert reply.state == "interrupted"
    assert len(reply.content) > 40 and shown.startswith(reply.content)


def test_a_damaged_conversations_file_is_set_aside_and_can_be_recovered(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    with ConversationStore(tiny_library_paths.data / STORE_FILE) as store:
        kept = store.create_conversation("Kept through the damage")
        store.add_message(kept.id, None, "user", "Remember this")
    database = tiny_library_paths.data / STORE_FILE
    damaged = bytearray(database.read_bytes())
    damaged[-512:] = b"\xff" * 512  # a damaged last page, as a bad sector or a torn write leaves it
    database.write_bytes(bytes(damaged))

    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    assert window.banner.isVisible() and "damaged" in window.error_banner.text()
    assert window.recover_button.isVisible()
    moved_aside = window.session.store.quarantined
    assert moved_aside is not None and moved_aside.exists()
    window.recover_button.click()
    assert "Kept through the damage" in listed(window)
    assert not window.banner.isVisible()


def test_each_conversation_keeps_its_settings_and_presets_are_saved(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    panel = window.settings_panel
    window.settings_button.click()
    assert panel.isVisible()
    assert [panel.preset.itemText(index) for index in range(panel.preset.count())][1:] == [
        "Balanced",
        "Precise",
        "Creative",
    ]
    panel.apply_preset("Precise")
    assert panel.temperature.value() == pytest.approx(0.2) and panel.preset.currentText() == "Precise"
    panel.system_prompt.setPlainText("Answer in French.")
    panel.max_tokens.setValue(6)
    exchange(qtbot, window, "Hello")
    first = window.session.conversation_id
    assert first is not None
    reply = window.session.store.thread(first)[-1]
    assert reply.settings is not None
    assert reply.settings.temperature == pytest.approx(0.2)
    assert (reply.settings.system_prompt, reply.settings.model) == ("Answer in French.", "tiny-chat")

    panel.save_preset("French tutor")
    assert panel.preset.findText("French tutor") > 0
    window.new_conversation()
    panel.apply_preset("Creative")
    panel.system_prompt.clear()
    exchange(qtbot, window, "Another")
    window.open_conversation(first)  # its own settings come back with it
    assert panel.system_prompt.toPlainText() == "Answer in French."
    assert panel.temperature.value() == pytest.approx(0.2) and panel.preset.currentText() == "French tutor"


def test_export_and_import_from_the_sidebar(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], tmp_path: Path
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.max_tokens.setValue(6)
    exchange(qtbot, window, "Export me <please>")
    conversation = window.session.conversation_id
    assert conversation is not None
    for extension in ("md", "html", "json"):
        window.sidebar.export_to(conversation, tmp_path / f"chat.{extension}", extension)
    assert "Export me <please>" in (tmp_path / "chat.md").read_text()
    assert "Export me &lt;please&gt;" in (tmp_path / "chat.html").read_text()

    window.sidebar.export_to(None, tmp_path / "all.json", "json")
    assert [c["title"] for c in json.loads((tmp_path / "all.json").read_text())["conversations"]] == [
        "Export me <please>"
    ]
    window.sidebar.import_from(tmp_path / "chat.json")  # a copy, opened at once
    assert listed(window).count("Export me <please>") == 2
    assert window.session.conversation_id not in (None, conversation)

    openai = tmp_path / "openai.json"
    openai.write_text('[{"role": "user", "content": "From the API"}, {"role": "assistant", "content": "Hi"}]')
    window.sidebar.import_from(openai)
    assert "From the API" in listed(window)
    assert "From the API" in window.chat_view.toPlainText()

    messages: list[str] = []
    window.sidebar.message.connect(messages.append)
    broken = tmp_path / "broken.json"
    broken.write_text('{"conversations": [{"title": 5}]}')
    window.sidebar.import_from(broken)
    assert messages and "was not imported" in messages[-1]
    assert len(listed(window)) == 3  # nothing added


def test_a_conversation_outgrowing_the_context_is_never_cut_silently(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")  # a 512-token context, a token per byte
    close_windows.append(window)
    window.max_tokens.setValue(8)
    assert not window.context_gauge.isVisible()  # nothing measured yet
    exchange(qtbot, window, "a" * 160)
    assert window.context_gauge.isVisible() and "of 512 tokens" in window.context_label.text()
    assert "when full, the oldest turns are left out" in window.context_label.text()  # the policy, told beforehand
    assert not window.banner.isVisible()
    exchange(qtbot, window, "b" * 160)
    assert "fills" in window.error_banner.text() and "oldest turns will be left out" in window.error_banner.text()

    exchange(qtbot, window, "c" * 160)  # no longer fits with the first exchange
    assert "The 2 oldest messages were left out" in window.error_banner.text()
    conversation = window.session.conversation_id
    assert conversation is not None
    assert len(window.session.store.thread(conversation)) == 6  # the conversation itself keeps everything

    window.new_conversation()
    window.settings_panel.context_policy.setCurrentIndex(window.settings_panel.context_policy.findData(STOP))
    exchange(qtbot, window, "a" * 160)
    exchange(qtbot, window, "b" * 160)
    send(qtbot, window, "c" * 160)
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)
    assert "nothing was sent" in window.error_banner.text()
    stopped = window.session.conversation_id
    assert stopped is not None
    question, reply = window.session.store.thread(stopped)[-2:]
    assert question.content == "c" * 160 and (reply.state, reply.content) == ("interrupted", "")


def test_keyboard_search_new_chat_and_stop(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)  # shortcuts reach the active window only
    window.max_tokens.setValue(4)
    exchange(qtbot, window, "Hello")
    assert window.session.conversation_id is not None
    QTest.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.sidebar.search_box.hasFocus()
    QTest.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.session.conversation_id is None and window.chat_view.toPlainText() == ""
    assert window.prompt_box.hasFocus()
    assert window.stop_button.shortcut().toString() == "Esc"


def test_regenerate_edit_continue_and_flip_between_versions(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.max_tokens.setValue(6)
    exchange(qtbot, window, "Capital of France?")
    conversation = window.session.conversation_id
    assert conversation is not None
    store = window.session.store
    question, first_reply = store.thread(conversation)
    assert "Regenerate" in window.chat_view.toPlainText() and "Edit" in window.chat_view.toPlainText()

    window.chat_view.anchorClicked.emit(QUrl(f"localai:regenerate/{first_reply.id}"))  # the link under the reply
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)
    second_reply = store.thread(conversation)[-1]
    assert second_reply.id != first_reply.id and second_reply.parent_id == question.id
    qtbot.waitUntil(lambda: "◀ 2/2 ▶" in window.chat_view.toPlainText())

    window.act_on_message("previous", second_reply.id)
    assert store.thread(conversation)[-1].id == first_reply.id and "◀ 1/2 ▶" in window.chat_view.toPlainText()

    window.act_on_message("continue", first_reply.id)
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)
    continued = store.get_message(first_reply.id)
    assert continued.content.startswith(first_reply.content) and continued.state == "complete"
    assert store.thread(conversation)[-1].id == first_reply.id  # added to, not a new reply

    window.act_on_message("edit", question.id, "Capital of Italy?")
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)
    edited, answer = store.thread(conversation)
    assert edited.content == "Capital of Italy?" and edited.parent_id is None and answer.parent_id == edited.id
    assert store.versions(conversation)[edited.id] == (2, 2)
    window.act_on_message("previous", edited.id)  # the first question comes back with its answers
    assert store.thread(conversation)[0].id == question.id


def test_a_reasoning_models_thinking_is_kept_apart_from_its_answer(
    qtbot: QtBot, app_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    # A template that opens the think block in the prompt, as DeepSeek-R1 distills' do: the reply starts thinking.
    thinking_template = CHATML_TEMPLATE.replace("<|im_start|>assistant\n{%", "<|im_start|>assistant\n<think>\n{%")
    write_tiny_model(app_paths.models / "tiny-thinker.gguf", chat_template=thinking_template, name="Tiny Thinker")
    window = open_window(qtbot, app_paths, "tiny-thinker")
    close_windows.append(window)
    model = window.current_model()
    assert model is not None and model.replies_start_reasoning
    window.max_tokens.setValue(12)
    send(qtbot, window, "Why is the sky blue?")
    qtbot.waitUntil(lambda: window.session.reply is None, timeout=REPLY_TIMEOUT_MS)  # all of it is thinking
    conversation = window.session.conversation_id
    assert conversation is not None
    reply = window.session.store.thread(conversation)[-1]
    assert reply.reasoning  # the tiny model never closes </think>: all it wrote is thinking
    assert reply.content == "" and "Thinking" in window.chat_view.toPlainText()


def test_a_conversation_keeps_its_model_and_context_length(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.max_tokens.setValue(4)
    window.settings_panel.context_length.setValue(256)
    exchange(qtbot, window, "Short context, please")
    assert "of 256 tokens" in window.context_label.text()  # the engine was loaded again with 256
    first = window.session.conversation_id
    assert first is not None

    window.new_conversation()
    window.model_picker.setCurrentIndex(window.model_picker.findData("tiny-base"))  # a base model, for another topic
    window.settings_panel.context_length.setValue(0)
    exchange(qtbot, window, "Once upon a time")
    assert "of 512 tokens" in window.context_label.text()  # automatic: the model's whole context fits here

    window.open_conversation(first)
    assert window.model_picker.currentData() == "tiny-chat"
    assert window.settings_panel.context_length.value() == 256
