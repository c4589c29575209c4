"""kill -9 while a reply streams, 50 times: the file stays sound and loses nothing it had committed.

Each run a child process (tests/e2e/conversation_writer.py) asks a question and streams a deterministic reply into
the same file; the test SIGKILLs it at a random moment, then checks the file as the kill left it and reopens it.
Most runs save more often than the app's SAVE_INTERVAL, so that kills land in the middle of commits.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from itertools import islice
from pathlib import Path

import pytest

from localai_app.core.conversations import SAVE_INTERVAL, ConversationStore
from tests.e2e.conversation_writer import question, words

ROOT = Path(__file__).resolve().parents[2]
RUNS = 50
SEED = 20250615


def reply_prefix(run: int, length: int) -> str:
    """The first whole words of run `run`'s reply that make up at least `length` characters."""
    text = ""
    for word in words(run):
        if len(text) >= length:
            return text
        text += word
    raise AssertionError("unreachable")


def stream_and_kill(db: Path, run: int, save_interval: float, after: float, log: Path) -> tuple[int, int]:
    """Starts the writer, waits until the reply has begun, kills it `after` seconds later; returns both ids."""
    command = [sys.executable, "-m", "tests.e2e.conversation_writer", str(db), str(run), str(save_interval)]
    with (
        log.open("w") as stderr,
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True) as child,
    ):
        assert child.stdout is not None
        asked = child.stdout.readline()
        started = child.stdout.readline()
        assert asked.startswith("user ") and started.startswith("streaming "), log.read_text()
        time.sleep(after)
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    return int(asked.split()[1]), int(started.split()[1])


@pytest.mark.timeout(180)
def test_kill_9_while_streaming_never_loses_committed_text(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    db = tmp_path / "conversations.sqlite3"
    questions: dict[int, str] = {}
    replies: dict[int, str] = {}
    for run in range(RUNS):
        save_interval = rng.choice((0.0, 0.02, SAVE_INTERVAL))
        question_id, reply_id = stream_and_kill(db, run, save_interval, rng.uniform(0.05, 0.4), tmp_path / "child.log")
        questions[question_id] = question(run)

        # The file exactly as the kill left it, before anything repairs it.
        with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"run {run}"

        with ConversationStore(db) as store:
            assert store.quarantined is None
            for message_id, text in questions.items():
                assert store.get_message(message_id).content == text
            reply = store.get_message(reply_id)
            assert reply.state == "interrupted"
            assert reply.content, f"run {run}: the first text was committed before 'streaming' was printed"
            assert reply.content == reply_prefix(run, len(reply.content)), f"run {run}: not a prefix of the stream"
            replies[reply_id] = reply.content
            tokens = store.reply_tokens(reply_id)  # committed with the text: never ahead of it, never torn
            if tokens is not None:
                assert tokens.before == "" and reply.content.startswith(tokens.text), f"run {run}"
                assert [token.token for token in tokens.tokens] == list(islice(words(run), len(tokens.tokens)))
            for message_id, text in replies.items():  # earlier replies are never touched again
                assert store.get_message(message_id).content == text
            assert {hit.message_id for hit in store.search(f"number {run}")} >= {question_id}

        with closing(sqlite3.connect(db)) as connection:
            # The search index matches the messages exactly (raises "malformed" otherwise).
            connection.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
    assert len(questions) == len(replies) == RUNS
