"""What the next reply answers: the branch on show, with edits and regenerations kept as versions to flip between,
and reasoning kept out of later turns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localai_app.core.chat_session import ChatSession
from localai_app.core.conversations import STORE_FILE, ChatSettings, ConversationStore
from localai_app.core.errors import AppError
from localai_app.core.library import ModelInfo

CHAT = ModelInfo("chat", "Chat", Path("chat.gguf"), (Path("chat.gguf"),), "library", 1, has_chat_template=True)
BASE = ModelInfo("base", "Base", Path("base.gguf"), (Path("base.gguf"),), "library", 1, has_chat_template=False)
SETTINGS = ChatSettings(model="chat", system_prompt="Be brief.")


@pytest.fixture
def session(tmp_path: Path) -> Iterator[ChatSession]:
    with ConversationStore(tmp_path / STORE_FILE) as store:
        yield ChatSession(store)


def reply(session: ChatSession, text: str, reasoning: str | None = None) -> int:
    assert session.reply is not None
    if reasoning:
        session.reply.append_reasoning(reasoning)
    session.append(text)
    message_id = session.reply.message_id
    session.finish({"completion_tokens": 3})
    return message_id


def contents(prompt: object) -> list[tuple[str, str]]:
    assert isinstance(prompt, list)
    return [(message["role"], message["content"]) for message in prompt]


def test_the_prompt_is_the_branch_on_show_without_reasoning(session: ChatSession) -> None:
    first = session.ask("Capital of France?", CHAT, SETTINGS)
    assert contents(first) == [("system", "Be brief."), ("user", "Capital of France?")]
    reply(session, "Paris.", reasoning="The user asks about France...")
    second = session.ask("And Spain?", CHAT, SETTINGS)
    assert contents(second) == [
        ("system", "Be brief."),
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "And Spain?"),
    ]
    assert session.conversation_id is not None
    assert session.store.get(session.conversation_id).title == "Capital of France?"


def test_a_model_without_a_chat_template_gets_the_text_alone(session: ChatSession) -> None:
    assert session.ask("Once upon a time", BASE, SETTINGS) == "Once upon a time"
    reply(session, " there was a fox.")
    assert session.ask("The end", BASE, SETTINGS) == "The end"


def test_edit_and_regenerate_keep_versions_to_flip_between(session: ChatSession) -> None:
    session.ask("Capital of France?", CHAT, SETTINGS)
    first_answer = reply(session, "Paris.")
    assert session.conversation_id is not None
    question = session.store.thread(session.conversation_id)[0].id

    again = session.regenerate(first_answer, CHAT, SETTINGS)
    assert contents(again)[-1] == ("user", "Capital of France?")  # the old answer is not in the new prompt
    second_answer = reply(session, "It is Paris.")
    assert session.versions(second_answer) == (2, 2)

    edited = session.edit(question, "Capital of Italy?", CHAT, SETTINGS)
    assert contents(edited) == [("system", "Be brief."), ("user", "Capital of Italy?")]
    reply(session, "Rome.")
    thread = session.store.thread(session.conversation_id)
    assert [message.content for message in thread] == ["Capital of Italy?", "Rome."]
    assert session.versions(thread[0].id) == (2, 2)

    back = session.flip(thread[0].id, -1)  # the first question, with its newest answer
    assert [message.content for message in back] == ["Capital of France?", "It is Paris."]
    back = session.flip(back[1].id, -1)
    assert [message.content for message in back] == ["Capital of France?", "Paris."]
    assert session.flip(back[1].id, -1)[-1].content == "Paris."  # the first version stays the first


def test_mistakes_are_explained(session: ChatSession, tmp_path: Path) -> None:
    session.ask("Hello", CHAT, SETTINGS)
    answer = reply(session, "Hi.")
    assert session.conversation_id is not None
    question = session.store.thread(session.conversation_id)[0].id
    with pytest.raises(AppError, match="Only your own messages can be edited"):
        session.edit(answer, "Hm", CHAT, SETTINGS)
    with pytest.raises(AppError, match="Only a reply can be regenerated"):
        session.regenerate(question, CHAT, SETTINGS)
    session.start_new()
    session.ask("Another topic", CHAT, SETTINGS)
    with pytest.raises(AppError, match="another conversation"):
        session.regenerate(answer, CHAT, SETTINGS)


def test_the_last_reply_is_continued_in_place(session: ChatSession) -> None:
    session.ask("Count to five", CHAT, SETTINGS)
    answer = reply(session, "One, two,")
    prompt = session.continue_reply(answer, CHAT, SETTINGS)
    assert contents(prompt)[-1] == ("assistant", "One, two,")  # the engine goes on from inside it
    session.append(" three.")
    session.finish({"completion_tokens": 2})
    assert session.store.get_message(answer).content == "One, two, three."

    session.ask("Once upon", BASE, SETTINGS)
    story = reply(session, " a time")
    assert session.continue_reply(story, BASE, SETTINGS) == "Once upon a time"
    session.interrupt()
    assert session.store.get_message(story).state == "interrupted"
    with pytest.raises(AppError, match="Only the last reply"):
        session.continue_reply(answer, CHAT, SETTINGS)


def test_a_what_if_branch_is_a_new_version_starting_with_the_alternative_token(session: ChatSession) -> None:
    session.ask("Capital of France?", CHAT, SETTINGS)
    original = reply(session, "Paris is the capital.")
    prompt = session.branch_reply(original, "Paris", " was", CHAT, SETTINGS)
    # The prompt ends inside the new version, so the engine continues it (continue_final_message).
    assert contents(prompt)[-1] == ("assistant", "Paris was")
    assert session.reply is not None
    branch = session.reply.message_id
    session.append(" lovely.")
    session.finish({"completion_tokens": 2})
    assert session.store.get_message(branch).content == "Paris was lovely."
    assert session.versions(branch) == (2, 2) and session.versions(original) == (1, 2)
    assert session.store.get_message(original).content == "Paris is the capital."
    session.ask("Once", BASE, SETTINGS)
    base_reply = reply(session, " upon a time")
    assert session.branch_reply(base_reply, " upon", " the", BASE, SETTINGS) == "Once upon the"


def test_a_reply_cannot_branch_where_its_tokens_are_not_its_text(session: ChatSession) -> None:
    session.ask("Capital of France?", CHAT, SETTINGS)
    original = reply(session, "Paris.", reasoning="The user asks...")
    with pytest.raises(AppError, match="cannot branch there"):
        session.branch_reply(original, "The user", " wants", CHAT, SETTINGS)  # the reasoning's tokens
    question = session.store.thread(session.store.get_message(original).conversation_id)[0]
    with pytest.raises(AppError, match="Only a reply"):
        session.branch_reply(question.id, "", "x", CHAT, SETTINGS)
