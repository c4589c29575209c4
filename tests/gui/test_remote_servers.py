"""A remote server from the GUI: llama-cpp-python's own OpenAI server (another implementation of the protocol),
started as a separate process, added in the Remote servers dialog and chatted with beside a local model."""

from __future__ import annotations

import signal
import subprocess

import pytest
from PySide6.QtWidgets import QAbstractButton, QAbstractItemView, QLineEdit, QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from localai_app.app import build_window
from localai_app.core.paths import AppPaths
from localai_app.ui.main_window import MainWindow
from localai_app.ui.remote_servers_dialog import RemoteServersDialog
from tests.conftest import free_port
from tests.gui.conftest import open_window

pytestmark = pytest.mark.gui
REPLY_TIMEOUT_MS = 60_000


def add_server(qtbot: QtBot, window: MainWindow, name: str, url: str, *, test_says: str) -> RemoteServersDialog:
    """Fill in the dialog, test the connection (until its answer includes `test_says`), add."""
    window.remote_button.click()
    dialog = window.remote_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.name_edit.setText(name)
    dialog.url_edit.setText(url + "/v1")  # as servers document their address
    dialog.test_button.click()
    qtbot.waitUntil(lambda: test_says in dialog.result_label.text(), timeout=10_000)
    dialog.add_button.click()
    assert dialog.server_list.count() == 1 and name in dialog.server_list.item(0).text()
    return dialog


def picker_names(window: MainWindow) -> list[str]:
    return [str(window.model_picker.itemData(index)) for index in range(window.model_picker.count())]


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.prompt_box.setPlainText(text)
    window.send_button.click()
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)


def restart(qtbot: QtBot, window: MainWindow, paths: AppPaths, close_windows: list[MainWindow]) -> MainWindow:
    """Close `window` and open the app again on the same settings, as the next session."""
    window.close()
    close_windows.remove(window)
    window = build_window(paths)
    qtbot.addWidget(window)
    close_windows.append(window)
    window.show()
    return window


def restart_picking_by_hand(
    qtbot: QtBot,
    window: MainWindow,
    server: subprocess.Popen[bytes],
    paths: AppPaths,
    close_windows: list[MainWindow],
) -> MainWindow:
    """A model the user picks before last session's remote server answers (held back with SIGSTOP) stays picked."""
    server.send_signal(signal.SIGSTOP)
    try:
        window = restart(qtbot, window, paths, close_windows)
        qtbot.waitUntil(lambda: "tiny-chat" in picker_names(window), timeout=10_000)
        local = window.model_picker.findData("tiny-chat")
        window.model_picker.setCurrentIndex(local)
        window.model_picker.activated.emit(local)  # what a click on the picker sends
    finally:
        server.send_signal(signal.SIGCONT)
    qtbot.waitUntil(lambda: "tiny-chat @ lab" in picker_names(window), timeout=10_000)
    assert getattr(window.current_model(), "name", None) == "tiny-chat"
    return window


def test_chat_with_a_remote_server_then_it_goes_away(
    qtbot: QtBot,
    tiny_library_paths: AppPaths,
    llama_cpp_server: tuple[str, subprocess.Popen[bytes]],
    close_windows: list[MainWindow],
) -> None:
    url, server = llama_cpp_server
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    dialog = add_server(qtbot, window, "lab", url, test_says="Connected: it offers 1 model: tiny-chat.")
    qtbot.waitUntil(lambda: "tiny-chat @ lab" in picker_names(window), timeout=10_000)
    assert picker_names(window)[-1] == "tiny-chat @ lab"  # beside the local models, after them
    dialog.close()

    window.model_picker.setCurrentIndex(picker_names(window).index("tiny-chat @ lab"))
    assert "on the server lab" in window.mode_label.text()
    window.max_tokens.setValue(8)
    send(qtbot, window, "Hello remote")
    reply = window.chat_view.reply_so_far()
    assert reply and "tokens/s" in window.stats_label.text()
    assert not window.error_banner.isVisible()
    assert not window.context_gauge.isVisible()  # llama_cpp.server cannot count tokens for the gauge
    conversation = window.session.conversation_id
    assert conversation is not None
    thread = window.session.store.thread(conversation)
    assert [(message.role, message.state) for message in thread] == [("user", "complete"), ("assistant", "complete")]
    assert thread[1].model == "tiny-chat @ lab" and thread[1].content == reply
    assert thread[1].stats and thread[1].stats["completion_tokens"] > 0

    # The local engine still answers beside it, and reopening the conversation switches back to the remote model.
    window.model_picker.setCurrentIndex(picker_names(window).index("tiny-chat"))
    window.new_conversation()
    send(qtbot, window, "Hello local")
    assert "tokens/s" in window.stats_label.text() and not window.error_banner.isVisible()
    window.open_conversation(conversation)
    assert getattr(window.current_model(), "name", None) == "tiny-chat @ lab"

    # The next start lists the servers after the library, and still comes back to the remote model.
    window = restart(qtbot, window, tiny_library_paths, close_windows)
    qtbot.waitUntil(lambda: getattr(window.current_model(), "name", None) == "tiny-chat @ lab", timeout=10_000)

    window = restart_picking_by_hand(qtbot, window, server, tiny_library_paths, close_windows)
    window.model_picker.setCurrentIndex(window.model_picker.findData("tiny-chat @ lab"))

    server.kill()
    server.wait()
    window.open_conversation(conversation)
    send(qtbot, window, "Are you there?")
    banner = window.error_banner.text()
    assert window.error_banner.isVisible() and "Traceback" not in banner
    assert banner.startswith("The connection to 127.0.0.1:") and "the server lab is not running there" in banner
    assert banner.endswith("Your conversation is kept; the next message tries the server again.")
    assert window.session.store.thread(conversation)[-1].state == "interrupted"


def test_a_server_that_is_down_does_not_stop_the_app(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    port = free_port()
    test_says = f"The connection to 127.0.0.1:{port} was refused: the server is not running there"
    dialog = add_server(qtbot, window, "gone", f"http://127.0.0.1:{port}", test_says=test_says)
    qtbot.waitUntil(lambda: "refused" in window.statusBar().currentMessage(), timeout=10_000)
    assert "Its models are not listed" in window.statusBar().currentMessage()
    assert "tiny-chat" in picker_names(window) and not any("@" in name for name in picker_names(window))

    monkeypatch.setattr(QMessageBox, "question", lambda *_: QMessageBox.StandardButton.Yes)
    dialog.server_list.setCurrentRow(0)
    dialog.remove_button.click()
    assert "Removed gone" in dialog.result_label.text()
    assert window.remote_servers.servers() == []


def test_dialog_checks_the_address_warns_about_keys_in_clear_and_names_its_controls(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.remote_button.click()
    dialog = window.remote_dialog
    assert dialog is not None
    dialog.name_edit.setText("box")
    dialog.url_edit.setText("192.168.1.20:8080")
    dialog.add_button.click()
    assert dialog.result_label.text() == "The address 192.168.1.20:8080 must start with http:// or https://."
    dialog.url_edit.setText("http://192.168.1.20:8080")
    assert dialog.key_warning.isHidden()
    dialog.key_edit.setText("secret")
    assert not dialog.key_warning.isHidden()
    dialog.url_edit.setText("https://192.168.1.20:8080")
    assert dialog.key_warning.isHidden()

    unnamed = [
        type(widget).__name__
        for widget in dialog.findChildren(QWidget)
        if (isinstance(widget, QAbstractButton) and not (widget.text() or widget.accessibleName()))
        or (isinstance(widget, (QLineEdit, QAbstractItemView)) and not widget.accessibleName())
    ]
    assert unnamed == []
