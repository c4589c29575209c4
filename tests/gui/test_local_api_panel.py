"""The Local API panel as a user drives it: address, key, snippets, serving the loaded model, the request log."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx
import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from localai_app.core.credentials import CREDENTIALS_FILE, Credentials
from localai_app.core.library import ModelInfo
from localai_app.core.paths import AppPaths
from localai_app.core.serving import API_KEY_CREDENTIAL, RequestRecord
from localai_app.core.settings import SETTINGS_FILE, LocalApi, load_settings
from localai_app.ui.local_api_panel import MAX_LOG_ROWS, LocalApiPanel
from localai_app.ui.main_window import MainWindow
from tests.conftest import free_port
from tests.gui.conftest import open_window

pytestmark = pytest.mark.gui
LOAD_TIMEOUT_MS = 60_000
KEY_NEEDED = "set an API key first"  # from ServeOptions.check's sentence for an exposed address without a key


def open_panel(qtbot: QtBot, paths: AppPaths, close_windows: list[MainWindow]) -> tuple[MainWindow, LocalApiPanel]:
    window = open_window(qtbot, paths, "tiny-chat")
    close_windows.append(window)
    assert window.local_api_panel is None  # built when first shown, not for the first frame
    window.local_api_button.click()
    panel = window.local_api_panel
    assert panel is not None and panel.isVisible()
    assert not panel.switch.isChecked() and panel.status.text() == "Off."
    return window, panel


def cell(panel: LocalApiPanel, row: int, column: int) -> str:
    item = panel.log.item(row, column)
    return item.text() if item is not None else ""


def use_port(qtbot: QtBot, paths: AppPaths, panel: LocalApiPanel, port: int) -> None:
    panel.port.setValue(port)  # as the arrows or typing do: applied and kept once the changes pause
    qtbot.waitUntil(lambda: load_settings(paths.config).local_api.port == port)
    assert f":{port}/v1" in panel.snippet.toPlainText()


def test_other_computers_need_a_key_kept_in_credentials_not_settings(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    _, panel = open_panel(qtbot, tiny_library_paths, close_windows)
    assert not panel.warning.isVisible()
    panel.address.setCurrentIndex(panel.address.findData("0.0.0.0"))
    assert panel.warning.isVisible() and "unencrypted" in panel.warning.text()
    assert KEY_NEEDED in panel.status.text()

    panel.switch.click()  # refused with the sentence: nothing starts, nothing crashes
    assert not panel.switch.isChecked() and KEY_NEEDED in panel.status.text()

    panel.generate_key_button.click()
    key = panel.key.text()
    assert key.startswith("sk-local-") and panel.status.text() == "Off."
    assert Credentials(tiny_library_paths.config).get(API_KEY_CREDENTIAL) == key
    assert key in (tiny_library_paths.config / CREDENTIALS_FILE).read_text()
    assert key not in (tiny_library_paths.config / SETTINGS_FILE).read_text()
    assert load_settings(tiny_library_paths.config).local_api.host == "0.0.0.0"

    panel.remove_key_button.click()  # refused while other computers may connect
    assert panel.key.text() == key and "This computer only" in panel.status.text()
    panel.address.setCurrentIndex(panel.address.findData("127.0.0.1"))
    panel.remove_key_button.click()
    assert panel.key.text() == "" and Credentials(tiny_library_paths.config).get(API_KEY_CREDENTIAL) is None


def test_snippets_name_the_model_address_and_key_and_copy(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    _, panel = open_panel(qtbot, tiny_library_paths, close_windows)
    port = free_port()
    use_port(qtbot, tiny_library_paths, panel, port)
    panel.generate_key_button.click()
    key = panel.key.text()
    for language in ("curl", "Python", "JavaScript"):
        panel.language.setCurrentText(language)
        snippet = panel.snippet.toPlainText()
        assert '"tiny-chat"' in snippet and f"http://127.0.0.1:{port}/v1" in snippet and key in snippet
        panel.copy_snippet_button.click()
        assert QApplication.clipboard().text() == snippet
    panel.copy_key_button.click()
    assert QApplication.clipboard().text() == key


@pytest.mark.parametrize(
    ("chosen", "said"),
    [
        (None, "Choose a model first"),
        (ModelInfo("llama @ lab", "llama", Path(), (), "remote", 0, server="lab"), "llama @ lab runs on lab"),
    ],
)
def test_turning_on_without_a_model_here_says_what_to_do(
    qtbot: QtBot, tmp_path: Path, chosen: ModelInfo | None, said: str
) -> None:
    panel = LocalApiPanel(LocalApi(), Credentials(tmp_path), save=lambda: None, current_model=lambda: chosen)
    qtbot.addWidget(panel)
    asked: list[object] = []
    panel.serve_requested.connect(lambda *request: asked.append(request))
    panel.switch.click()
    assert not panel.switch.isChecked() and panel.status.text().startswith(said) and asked == []


def test_origins_are_checked_and_kept(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    _, panel = open_panel(qtbot, tiny_library_paths, close_windows)
    panel.origins.setText("https://school.example, *")
    panel.origins.editingFinished.emit()
    assert "is not an origin" in panel.status.text()
    panel.origins.setText("https://school.example, http://localhost:3000")
    panel.origins.editingFinished.emit()
    assert panel.status.text() == "Off."
    saved = load_settings(tiny_library_paths.config).local_api
    assert saved.allowed_origins == ["https://school.example", "http://localhost:3000"]


def test_request_log_hears_the_engine_thread_keeps_the_latest_and_clears(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window, panel = open_panel(qtbot, tiny_library_paths, close_windows)
    assert window.engine_manager.on_request is not None

    def report_from_a_reader_thread(count: int) -> None:
        for number in range(count):
            on_request = window.engine_manager.on_request
            assert on_request is not None
            on_request(RequestRecord(1.7e9, "127.0.0.1", "POST", "/v1/completions", 200, number, 4, 12.5))

    reader = threading.Thread(target=report_from_a_reader_thread, args=(MAX_LOG_ROWS + 20,))
    reader.start()
    reader.join()
    last = str(MAX_LOG_ROWS + 19)  # prompt_tokens numbers the reports
    qtbot.waitUntil(lambda: cell(panel, panel.log.rowCount() - 1, 4) == last)
    assert panel.log.rowCount() == MAX_LOG_ROWS
    assert cell(panel, 0, 4) == "20"  # the oldest rows went first
    assert cell(panel, 0, 2) == "POST /v1/completions"
    panel.clear_log_button.click()
    assert panel.log.rowCount() == 0


def test_serves_the_loaded_model_logs_requests_and_stops(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    window, panel = open_panel(qtbot, tiny_library_paths, close_windows)
    port = free_port()
    use_port(qtbot, tiny_library_paths, panel, port)
    panel.generate_key_button.click()
    key = panel.key.text()
    base = f"http://127.0.0.1:{port}/v1"

    panel.switch.click()
    qtbot.waitUntil(lambda: panel.status.text() == f"Serving tiny-chat at {base}", timeout=LOAD_TIMEOUT_MS)
    reply = httpx.post(
        f"{base}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "tiny-chat", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    usage = reply.json()["usage"]
    qtbot.waitUntil(lambda: panel.log.rowCount() > 0)
    row = [cell(panel, panel.log.rowCount() - 1, column) for column in range(panel.log.columnCount())]
    tokens = [str(usage["prompt_tokens"]), str(usage["completion_tokens"])]
    assert row[2:6] == ["POST /v1/chat/completions", "200", *tokens]
    assert 0 < usage["completion_tokens"] <= 4

    assert httpx.get(f"{base}/models", timeout=10).status_code == 401  # no key

    # Another model in the window: served in its place, at the same address.
    window.model_picker.setCurrentIndex(window.model_picker.findData("tiny-base"))
    qtbot.waitUntil(lambda: panel.status.text() == f"Serving tiny-base at {base}", timeout=LOAD_TIMEOUT_MS)
    assert '"tiny-base"' in panel.snippet.toPlainText()

    panel.switch.click()
    qtbot.waitUntil(lambda: panel.status.text() == "Off.", timeout=LOAD_TIMEOUT_MS)

    def refused() -> bool:
        try:
            httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {key}"}, timeout=2)
        except httpx.TransportError:
            return True
        return False

    qtbot.waitUntil(refused, timeout=LOAD_TIMEOUT_MS)


def test_a_port_in_use_is_explained_and_serving_stays_off(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow]
) -> None:
    _, panel = open_panel(qtbot, tiny_library_paths, close_windows)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        use_port(qtbot, tiny_library_paths, panel, taken.getsockname()[1])
        panel.switch.click()
        qtbot.waitUntil(lambda: panel.status.text().startswith("Not serving:"), timeout=LOAD_TIMEOUT_MS)
    assert not panel.switch.isChecked()
