"""Side by side stored as one conversation: one question, two replies as siblings, and each side's own branch after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localai_app.core.conversations import SIDE_BY_SIDE, STORE_FILE, ChatSettings, ConversationStore
from localai_app.core.library import ModelInfo
from localai_app.core.side_by_side import (
    SideBySideSession,
    branches,
    is_side_by_side,
    settings_label,
    threads_per_side,
)

CHAT = ModelInfo("chat", "Chat", Path("chat.gguf"), (Path("chat.gguf"),), "library", 1, has_chat_template=True)
BASE = ModelInfo("base", "Base", Path("base.gguf"), (Path("base.gguf"),), "library", 1, has_chat_template=False)
COLD = ChatSettings(model="chat", temperature=0.0, seed=7)
HOT = ChatSettings(model="chat", temperature=1.0, system_prompt="Be  playful.")


@pytest.fixture
def session(tmp_path: Path) -> Iterator[SideBySideSession]:
    with ConversationStore(tmp_path / STORE_FILE) as store:
        yield SideBySideSession(store)


def contents(prompt: object) -> list[str]:
    assert isinstance(prompt, list)
    return [message["content"] for message in prompt]


def answer(session: SideBySideSession, *texts: str) -> None:
    for side, text in zip(session.sides, texts, strict=True):
        side.append(text)
        side.finish({"completion_tokens": 1})


def test_threads_are_shared_out_and_never_zero() -> None:
    assert [threads_per_side(cores) for cores in (1, 2, 3, 8)] == [1, 1, 1, 4]


def test_the_label_names_what_tells_two_sides_apart() -> None:
    assert settings_label(COLD) == "temperature 0, top-p 0.95, seed 7"
    assert settings_label(HOT) == "temperature 1, top-p 0.95, random seed, system prompt “Be playful.”"


def test_one_question_two_replies_then_each_side_goes_on_in_its_own_branch(session: SideBySideSession) -> None:
    first = session.ask("Hello", [(CHAT, COLD), (CHAT, HOT)])
    assert first[0] == [{"role": "user", "content": "Hello"}]
    assert first[1] == [{"role": "system", "content": "Be  playful."}, {"role": "user", "content": "Hello"}]
    answer(session, "Cold hi", "Hot hi")
    assert session.conversation_id is not None
    conversation = session.store.get(session.conversation_id)
    assert is_side_by_side(conversation.settings) and conversation.settings.temperature == 0.0  # the left side's
    question = session.store.thread(conversation.id)[0]
    replies = session.store.children(question.id)
    assert [(reply.content, reply.settings and reply.settings.temperature) for reply in replies] == [
        ("Cold hi", 0.0),
        ("Hot hi", 1.0),
    ]

    follow_up = session.ask("More", [(CHAT, COLD), (CHAT, HOT)])
    assert contents(follow_up[0]) == ["Hello", "Cold hi", "More"]
    assert contents(follow_up[1]) == ["Be  playful.", "Hello", "Hot hi", "More"]
    answer(session, "Cold more", "Hot more")

    reopened = SideBySideSession(session.store).open(conversation.id)
    assert [[m.content for m in side] for side in reopened] == [
        ["Hello", "Cold hi", "More", "Cold more"],
        ["Hello", "Hot hi", "More", "Hot more"],
    ]
    assert [m.content for m in session.store.thread(conversation.id)] == ["Hello", "Cold hi", "More", "Cold more"]


def test_a_base_model_side_gets_the_text_alone(session: SideBySideSession) -> None:
    prompts = session.ask("Once upon a time", [(CHAT, COLD), (BASE, ChatSettings(model="base"))])
    assert prompts[1] == "Once upon a time"


def test_exports_show_both_sides_labelled_with_model_and_settings(session: SideBySideSession) -> None:
    session.ask("Hello", [(CHAT, COLD), (BASE, HOT)])
    session.sides[0].append("Cold hi")
    session.sides[0].finish({})
    session.sides[1].append("Hot h")
    session.sides[1].interrupt("Interrupted: the engine stopped.")
    session.ask("More", [(CHAT, COLD), (BASE, HOT)])
    answer(session, "Cold more", "Hot more")
    assert session.conversation_id is not None
    markdown = session.store.export_markdown(session.conversation_id)
    assert markdown.count("## You") == 2  # the follow-up, saved once per side, is shown once
    assert "## Assistant · chat (temperature 0, top-p 0.95, seed 7)\n\nCold hi" in markdown
    assert "## Assistant · base (temperature 1, top-p 0.95, random seed, system prompt “Be playful.”)" in markdown
    assert "Hot h\n\n*(this reply was interrupted)*" in markdown
    assert markdown.index("Cold hi") < markdown.index("Hot h") < markdown.index("More") < markdown.index("Hot more")
    page = session.store.export_html(session.conversation_id)
    assert "Assistant · base (temperature 1" in page and "Cold more" in page and "Hot more" in page
    document = session.store.export_json(session.conversation_id)["conversations"][0]
    assert document["settings"]["layout"] == SIDE_BY_SIDE
    assert len(document["messages"]) == 7  # the first question, two replies; per side a follow-up and its reply


def test_a_side_never_saved_starts_its_branch_at_the_first_question(session: SideBySideSession) -> None:
    store = session.store
    conversation = store.create_conversation("Cut short", ChatSettings(layout=SIDE_BY_SIDE)).id
    question = store.add_message(conversation, None, "user", "Hello")
    store.add_message(conversation, question.id, "assistant", "Left only")
    assert [[m.content for m in side] for side in branches(store, conversation)] == [["Hello", "Left only"], ["Hello"]]
    session.open(conversation)
    prompts = session.ask("Again", [(CHAT, COLD), (CHAT, HOT)])
    assert contents(prompts[1]) == ["Be  playful.", "Hello", "Again"]
