"""The Discover panel as a user goes through it: the offline catalog, a search on the (loopback) Hub, a repository
with its files, fit and licence, a download, the model in the library, a chat with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from huggingface_hub import constants as hub_constants
from huggingface_hub import get_token
from PySide6.QtWidgets import QDialog, QTreeWidget, QTreeWidgetItem
from pytestqt.qtbot import QtBot

from localai_app.core.hub import has_stored_token
from localai_app.core.library import format_bytes
from localai_app.core.paths import AppPaths
from localai_app.core.settings import Settings, load_settings, save_settings
from localai_app.ui.hub_settings_dialog import HubSettingsDialog
from localai_app.ui.main_window import MainWindow
from tests.fakes.hub_server import FakeHub, FakeRepo
from tests.gui.conftest import open_window
from tests.gui.test_main_window import REPLY_TIMEOUT_MS, send

REPO = "tester/Tiny-Chat-GGUF"


def top_item(tree: QTreeWidget, index: int) -> QTreeWidgetItem:
    item = tree.topLevelItem(index)
    assert item is not None
    return item


@pytest.fixture
def hub(fake_hub: FakeHub, tiny_chat_model: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake_hub.add_repo(
        FakeRepo(
            REPO,
            {"Tiny-Chat-Q8_0.gguf": tiny_chat_model, "README.md": b"# Tiny chat\n\nA *test* model.\n"},
            licence="cc-by-nc-4.0",
            downloads=42,
            parameters=500_000,
            base_model="tester/Tiny-Chat",
        )
    )
    monkeypatch.setitem(os.environ, "HF_ENDPOINT", fake_hub.url)
    return fake_hub


def test_catalog_search_download_then_chat(
    qtbot: QtBot,
    hub: FakeHub,
    tiny_chat_model: Path,
    tiny_library_paths: AppPaths,
    close_windows: list[MainWindow],
) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.discover_button.click()
    panel = window.discover_panel
    assert panel is not None and panel.isVisible()
    assert panel.results.topLevelItemCount() > 0  # the curated catalog, with no network involved
    assert "Any computer" in top_item(panel.results, 0).text(0)

    panel.query.setText("tiny")
    panel.search_button.click()
    qtbot.waitUntil(lambda: panel.results.topLevelItemCount() == 1, timeout=10_000)
    result = top_item(panel.results, 0)
    assert [result.text(column) for column in (0, 2, 6, 7)] == [REPO, "42", "open", "tester/Tiny-Chat"]

    panel.results.setCurrentItem(result)
    qtbot.waitUntil(lambda: panel.files.topLevelItemCount() == 1, timeout=20_000)
    file_row = top_item(panel.files, 0)
    assert file_row.text(1) == "Q8_0"
    assert file_row.text(4) == "fits"
    assert "tokens/s" in file_row.text(5) or "after the first load" in file_row.text(5)
    assert file_row.text(0) == "★"
    assert "non-commercial" in panel.repo_licence.text()
    assert "A test model." in panel.card.toPlainText()

    panel.download_button.click()
    qtbot.waitUntil(
        lambda: "Tiny-Chat-Q8_0" in [window.model_picker.itemData(i) for i in range(window.model_picker.count())],
        timeout=20_000,
    )
    assert top_item(panel.queue, 0).text(5) == "done"
    size = format_bytes(tiny_chat_model.stat().st_size)
    assert top_item(panel.queue, 0).text(2) == f"{size} of {size}"

    index = [window.model_picker.itemData(i) for i in range(window.model_picker.count())].index("Tiny-Chat-Q8_0")
    window.model_picker.setCurrentIndex(index)
    window.max_tokens.setValue(8)
    send(qtbot, window, "Hello")
    qtbot.waitUntil(lambda: bool(window.chat_view.reply_so_far()), timeout=REPLY_TIMEOUT_MS)
    qtbot.waitUntil(window.send_button.isEnabled, timeout=REPLY_TIMEOUT_MS)


def test_offline_search_says_so_and_the_catalog_still_works(
    qtbot: QtBot, tiny_library_paths: AppPaths, close_windows: list[MainWindow], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(os.environ, "HF_ENDPOINT", "http://127.0.0.1:9")
    save_settings(tiny_library_paths.config, Settings(last_model="tiny-chat"))
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.discover_button.click()
    panel = window.discover_panel
    assert panel is not None
    panel.query.setText("qwen")
    panel.search_button.click()
    qtbot.waitUntil(lambda: "offline" in panel.status.text(), timeout=10_000)
    panel.catalog_button.click()
    assert panel.results.topLevelItemCount() > 0


def test_hub_settings_switch_to_a_mirror_and_store_the_token_outside_the_settings(
    tmp_path: Path,
    qtbot: QtBot,
    hub: FakeHub,
    tiny_library_paths: AppPaths,
    close_windows: list[MainWindow],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(os.environ, "HF_ENDPOINT", "http://127.0.0.1:9")  # nothing there: only the setting can help
    monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    close_windows.append(window)
    window.discover_button.click()
    panel = window.discover_panel
    assert panel is not None

    dialog = HubSettingsDialog(None, has_stored_token(), parent=panel)
    assert dialog.endpoint.placeholderText() == "http://127.0.0.1:9"
    dialog.endpoint.setText("ftp://mirror.example")
    dialog.accept()
    assert dialog.result() != QDialog.DialogCode.Accepted  # stays open with the reason
    assert "is not a Hub address" in dialog.error.text()
    dialog.endpoint.setText(f"  {hub.url}/ ")
    dialog.token.setText("hf_secret")
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    panel.apply_hub_settings(dialog)

    assert load_settings(tiny_library_paths.config).hub_endpoint == hub.url
    assert "hf_secret" not in (tiny_library_paths.config / "settings.json").read_text()
    assert get_token() == "hf_secret"
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    panel.query.setText("tiny")
    panel.search_button.click()
    qtbot.waitUntil(lambda: panel.results.topLevelItemCount() == 1, timeout=10_000)
    assert top_item(panel.results, 0).text(0) == REPO

    forget = HubSettingsDialog(hub.url, has_stored_token(), parent=panel)
    assert forget.forget_token.isEnabled()
    forget.forget_token.setChecked(True)
    forget.endpoint.clear()
    forget.accept()
    panel.apply_hub_settings(forget)
    assert not has_stored_token()
    assert load_settings(tiny_library_paths.config).hub_endpoint is None
