"""A child process for test_conversation_durability: asks one question and streams a reply until it is killed.

Run as `python -m tests.e2e.conversation_writer DB RUN SAVE_INTERVAL`. It prints `user <id>` once the question is
committed and `streaming <id>` once the first text of the reply is, then appends words forever.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from localai_app.core.conversations import ConversationStore
from localai_app.core.replies import TokenChoice, TokenProbability

# Multi-byte words too: a save cut half-way through a character must be impossible.
VOCABULARY = ("the", "model", "streams", "tokens", "é", "naïve", "日本語", "🙂", "—", "\n", "**bold**", "<tag>")


def question(run: int) -> str:
    return f"Question number {run}: what happens when the power goes?"


def words(run: int) -> Iterator[str]:
    """The reply of run `run`, the same in the child and in the test."""
    rng = random.Random(run)
    while True:
        yield rng.choice(VOCABULARY) + " "


def main(arguments: list[str]) -> None:
    path, run, save_interval = Path(arguments[0]), int(arguments[1]), float(arguments[2])
    store = ConversationStore(path)
    conversation = store.create_conversation(f"run {run}")
    asked = store.add_message(conversation.id, None, "user", question(run))
    print(f"user {asked.id}", flush=True)
    writer = store.start_reply(conversation.id, asked.id, model="tiny", save_interval=save_interval)
    for count, word in enumerate(words(run)):
        writer.append(word)
        # As the window does with the token view on: each word's probabilities right after it, saved with the text.
        writer.append_tokens([TokenProbability(word, -0.5, [TokenChoice(word, -0.5, count)], count)])
        if count == 0:
            print(f"streaming {writer.message_id}", flush=True)
        time.sleep(0.002)


if __name__ == "__main__":
    main(sys.argv[1:])
