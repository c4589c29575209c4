"""Conversations from the terminal: `chat --save` keeps an exchange (and `--conversation` continues it), then
`conversations` lists it and `export` writes it as Markdown, HTML or JSON; mistakes are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localai_app.core.conversations import STORE_FILE, ConversationStore
from localai_app.core.paths import AppPaths
from tests.e2e.test_starter_and_cli import run_cli


def test_a_saved_chat_is_listed_continued_and_exported(tiny_library_paths: AppPaths, tmp_path: Path) -> None:
    basedir = tiny_library_paths.config.parent
    first = run_cli("chat", "tiny-chat", "Hello <b>there</b>", "--max-tokens", "6", "--save", basedir=basedir)
    assert first.returncode == 0, first.stderr
    assert "Saved as conversation 1." in first.stderr
    again = run_cli("chat", "tiny-chat", "Go on", "--max-tokens", "6", "--save", "--conversation", "1", basedir=basedir)
    assert again.returncode == 0, again.stderr

    listing = run_cli("conversations", "--json", basedir=basedir)
    assert listing.returncode == 0, listing.stderr
    (row,) = json.loads(listing.stdout)
    assert row["id"] == 1 and row["title"] == "Hello <b>there</b>" and row["messages"] == 4
    assert "Hello <b>there</b>" in run_cli("conversations", basedir=basedir).stdout

    with ConversationStore(tiny_library_paths.data / STORE_FILE) as store:  # what the window will show
        thread = store.thread(1)
    assert [message.role for message in thread] == ["user", "assistant", "user", "assistant"]
    assert thread[1].content and first.stdout.startswith(thread[1].content)
    assert thread[1].state == "complete" and thread[1].model == "tiny-chat" and thread[1].stats

    markdown = run_cli("export", "1", "--format", "md", basedir=basedir)
    assert markdown.returncode == 0 and "Go on" in markdown.stdout
    page = tmp_path / "chat.html"
    html_export = run_cli("export", "1", "--format", "html", "-o", str(page), basedir=basedir)
    assert html_export.returncode == 0, html_export.stderr
    assert "Hello &lt;b&gt;there&lt;/b&gt;" in page.read_text()
    everything = json.loads(run_cli("export", "all", "--format", "json", basedir=basedir).stdout)
    (document,) = everything["conversations"]
    assert [message["role"] for message in document["messages"]] == ["user", "assistant", "user", "assistant"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("export", "abc"), "is not a conversation id"),
        (("export", "7"), "does not exist"),
        (("export", "all", "--format", "md"), "use --format json"),
        (("chat", "tiny-chat", "Hi", "--conversation", "1"), "add --save"),
        (("chat", "tiny-chat", "Hi", "--save", "--conversation", "9"), "does not exist"),
    ],
)
def test_conversation_mistakes_are_one_line_and_exit_2(
    tiny_library_paths: AppPaths, args: tuple[str, ...], words: str
) -> None:
    result = run_cli(*args, basedir=tiny_library_paths.config.parent)
    assert result.returncode == 2
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
