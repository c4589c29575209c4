"""The conversation store against real SQLite files: CRUD, branches, streaming saves, search, exports, damage."""

from __future__ import annotations

import hashlib
import html
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from localai_app.core import conversations
from localai_app.core.conversations import (
    EXPORT_FORMAT,
    SAVE_INTERVAL,
    SCHEMA_VERSION,
    ChatSettings,
    ConversationStore,
    fts_query,
)
from localai_app.core.errors import (
    ConversationStoreError,
    ImportFormatError,
    NewerStoreError,
    UnknownConversationError,
)
from localai_app.core.replies import TokenChoice, TokenProbability
from localai_app.core.reply_tokens import ReplyTokens

FIXTURE_V1 = Path(__file__).parent.parent / "fixtures" / "conversations-v1.sql"
START = 1_750_000_000.0  # 2025-06-15


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "conversations.sqlite3"


@pytest.fixture
def store(db: Path, clock: Clock) -> Iterator[ConversationStore]:
    with ConversationStore(db, now=clock) as opened:
        yield opened


def on_disk(db: Path, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
    """What another process would read now: committed data only."""
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as connection:
        return connection.execute(sql, parameters).fetchall()


def integrity(path: Path) -> str:
    with closing(sqlite3.connect(path)) as connection:
        result: str = connection.execute("PRAGMA integrity_check").fetchone()[0]
        return result


def chat(store: ConversationStore, title: str = "Chat", *turns: str) -> int:
    """A conversation with alternating user and assistant turns."""
    conversation = store.create_conversation(title)
    parent = None
    for index, text in enumerate(turns):
        parent = store.add_message(conversation.id, parent, "user" if index % 2 == 0 else "assistant", text).id
    return conversation.id


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_v1_fixture(db: Path) -> None:
    with closing(sqlite3.connect(db)) as connection:
        connection.executescript(FIXTURE_V1.read_text(encoding="utf-8"))


# -- conversations -----------------------------------------------------------------------------------------------


def test_create_get_and_reopen(db: Path, clock: Clock) -> None:
    settings = ChatSettings(model="Tiny", system_prompt="Be brief.", temperature=0.3, top_k=20, seed=5)
    with ConversationStore(db, now=clock) as store:
        created = store.create_conversation("  First chat ", settings)
        assert store.quarantined is None
    with ConversationStore(db, now=clock) as store:
        again = store.get(created.id)
    assert again == created
    assert (again.title, again.settings, again.pinned, again.deleted_at, again.leaf_id) == (
        "First chat",
        settings,
        False,
        None,
        None,
    )
    assert again.created_at == again.updated_at == START
    assert on_disk(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert on_disk(db, "PRAGMA journal_mode") == [("wal",)]


def test_list_pinned_first_then_most_recent_activity(store: ConversationStore, clock: Clock) -> None:
    first = store.create_conversation("first").id
    clock.advance(1)
    second = store.create_conversation("second").id
    clock.advance(1)
    third = store.create_conversation("third").id
    clock.advance(1)
    store.add_message(first, None, "user", "bump")  # activity moves a conversation up
    assert [item.id for item in store.list_conversations()] == [first, third, second]
    store.set_pinned(second, True)
    clock.advance(1)
    store.rename(third, "renamed")  # renaming is not activity: the order stays
    store.update_settings(third, ChatSettings(temperature=1.5))
    assert [item.id for item in store.list_conversations()] == [second, first, third]
    assert store.get(third).title == "renamed"
    assert store.get(third).settings.temperature == 1.5
    assert store.get(second).pinned


def test_unknown_ids_raise_a_sentence(store: ConversationStore) -> None:
    conversation = store.create_conversation("mine").id
    other = chat(store, "other", "a question")
    foreign = store.thread(other)[0].id
    with pytest.raises(UnknownConversationError, match="Conversation 99 does not exist"):
        store.get(99)
    with pytest.raises(UnknownConversationError):
        store.rename(99, "x")
    with pytest.raises(UnknownConversationError):
        store.get_message(1234)
    with pytest.raises(UnknownConversationError, match="not part of conversation"):
        store.add_message(conversation, foreign, "user", "my parent is elsewhere")
    with pytest.raises(UnknownConversationError):
        store.select_leaf(conversation, foreign)
    with pytest.raises(ValueError, match="role"):
        store.add_message(conversation, None, "tool", "no")  # type: ignore[arg-type]


def test_soft_delete_undo_and_purge(store: ConversationStore, clock: Clock, db: Path) -> None:
    keep = chat(store, "keep", "kept words")
    gone = chat(store, "gone", "doomed zebra words")
    store.delete(gone)
    assert [item.id for item in store.list_conversations()] == [keep]
    assert [item.id for item in store.list_conversations(deleted=True)] == [gone]
    assert store.get(gone).deleted_at == START
    assert store.search("zebra") == []  # the bin is not searched
    store.undo_delete(gone)
    assert {item.id for item in store.list_conversations()} == {keep, gone}
    assert [hit.conversation_id for hit in store.search("zebra")] == [gone]

    store.delete(gone)
    clock.advance(10 * 86400)
    assert store.purge_deleted(older_than=30 * 86400) == 0  # in the bin for 10 days only
    clock.advance(21 * 86400)
    assert store.purge_deleted(older_than=30 * 86400) == 1
    with pytest.raises(UnknownConversationError):
        store.get(gone)
    assert on_disk(db, "SELECT count(*) FROM messages WHERE conversation_id = ?", gone) == [(0,)]
    assert store.search("zebra") == []
    assert [item.id for item in store.list_conversations()] == [keep]


def test_purging_a_very_long_conversation(store: ConversationStore) -> None:
    """A cascade down parent links would stop at SQLite's trigger depth (1,000); deletion must not rely on one."""
    messages = [
        {"id": number, "parent": number - 1 or None, "role": "user" if number % 2 else "assistant", "content": "hi"}
        for number in range(1, 1501)
    ]
    (conversation,) = store.import_json(export_of([{"title": "long", "messages": messages}]))
    assert len(store.thread(conversation)) == 1500
    store.delete(conversation)
    assert store.purge_deleted() == 1


# -- presets -----------------------------------------------------------------------------------------------------


def test_default_presets_and_applying_one(store: ConversationStore) -> None:
    presets = {preset.name: preset for preset in store.presets()}
    assert list(presets) == ["Balanced", "Precise", "Creative"]
    assert presets["Precise"].values["temperature"] < presets["Balanced"].values["temperature"]
    assert presets["Creative"].values["temperature"] > presets["Balanced"].values["temperature"]
    mine = ChatSettings(model="Tiny", system_prompt="Be brief.", temperature=0.9)
    applied = presets["Precise"].apply(mine)
    assert (applied.model, applied.system_prompt, applied.temperature) == ("Tiny", "Be brief.", 0.2)


def test_saving_replacing_and_deleting_presets(store: ConversationStore) -> None:
    store.save_preset("Code", {"temperature": 0, "system_prompt": "You write Python."})
    store.save_preset("code", {"temperature": 0.1})  # names are case-insensitive: this replaces it
    code = [preset for preset in store.presets() if preset.name.casefold() == "code"]
    assert len(code) == 1 and code[0].values == {"temperature": 0.1}
    assert isinstance(code[0].values["temperature"], float)
    store.delete_preset("code")
    assert [preset.name for preset in store.presets()] == ["Balanced", "Precise", "Creative"]
    with pytest.raises(ValueError, match="temperature"):
        store.save_preset("Bad", {"temperature": "hot"})


# -- branches ----------------------------------------------------------------------------------------------------


def test_editing_and_regenerating_make_branches(store: ConversationStore) -> None:
    conversation = store.create_conversation("branches").id
    system = store.add_message(conversation, None, "system", "Be brief.")
    question = store.add_message(conversation, system.id, "user", "Capital of France?")
    answer = store.add_message(conversation, question.id, "assistant", "Paris.")
    regenerated = store.add_message(conversation, question.id, "assistant", "It is Paris.")
    assert [message.id for message in store.thread(conversation)] == [system.id, question.id, regenerated.id]
    assert [message.id for message in store.siblings(answer.id)] == [answer.id, regenerated.id]

    edited = store.add_message(conversation, system.id, "user", "Capital of Italy?")  # editing = a sibling
    reply = store.add_message(conversation, edited.id, "assistant", "Rome.")
    assert [message.content for message in store.thread(conversation)] == ["Be brief.", "Capital of Italy?", "Rome."]
    assert [message.id for message in store.siblings(question.id)] == [question.id, edited.id]
    assert [message.id for message in store.children(question.id)] == [answer.id, regenerated.id]

    # Flip back to the first question: its newest reply is shown.
    leaf = store.select_branch(conversation, question.id)
    assert leaf.id == regenerated.id == store.leaf_under(question.id).id == store.get(conversation).leaf_id
    assert [message.content for message in store.thread(conversation)] == [
        "Be brief.",
        "Capital of France?",
        "It is Paris.",
    ]
    store.select_leaf(conversation, answer.id)
    assert [message.content for message in store.thread(conversation)][-1] == "Paris."
    store.select_leaf(conversation, question.id)  # a leaf chosen exactly: the thread stops there
    assert [message.id for message in store.thread(conversation)] == [system.id, question.id]
    store.select_branch(conversation, edited.id)
    assert store.thread(conversation)[-1].id == reply.id


def test_first_messages_can_be_siblings_and_empty_threads(store: ConversationStore) -> None:
    conversation = store.create_conversation("roots").id
    assert store.thread(conversation) == []
    first = store.add_message(conversation, None, "user", "one")
    second = store.add_message(conversation, None, "user", "two")
    assert [message.id for message in store.siblings(first.id)] == [first.id, second.id]
    assert [message.id for message in store.thread(conversation)] == [second.id]
    with pytest.raises(UnknownConversationError):
        store.thread(404)


# -- streaming ---------------------------------------------------------------------------------------------------


def saved_reply(db: Path, message_id: int) -> tuple[str, str | None, str]:
    ((content, reasoning, state),) = on_disk(
        db, "SELECT content, reasoning, state FROM messages WHERE id = ?", message_id
    )
    return content, reasoning, state


def test_reply_saved_at_once_then_at_most_once_per_interval(store: ConversationStore, db: Path) -> None:
    conversation = chat(store, "stream", "Tell me a story.")
    question = store.thread(conversation)[-1]
    monotonic = Clock(100.0)
    writer = store.start_reply(conversation, question.id, model="Tiny", model_sha256="ab" * 32, clock=monotonic)
    assert saved_reply(db, writer.message_id) == ("", None, "streaming")
    assert store.thread(conversation)[-1].id == writer.message_id

    writer.append("Once")
    assert saved_reply(db, writer.message_id)[0] == "Once"  # the first text is saved promptly

    saves = 0
    last = "Once"
    for step in range(1, 41):  # five seconds of tokens, one every 1/8 s (exact in binary)
        monotonic.advance(0.125)
        writer.append(f" w{step}")
        content = saved_reply(db, writer.message_id)[0]
        if content != last:
            saves += 1
            last = content
            assert content == writer.text  # each save holds everything appended so far
        assert len(writer.text) - len(content) <= 8 * len(" w40")  # never more than a second behind
    assert saves == 5 == 40 * 0.125 / SAVE_INTERVAL

    monotonic.advance(0.3)
    writer.append_reasoning("thinking")
    writer.append(" end.")
    assert saved_reply(db, writer.message_id)[0] != writer.text
    message = writer.finish({"ttft_ms": 12.5, "completion_tokens": 52})
    assert saved_reply(db, writer.message_id) == (writer.text, "thinking", "complete")
    assert (message.state, message.stats, message.model, message.model_sha256) == (
        "complete",
        {"ttft_ms": 12.5, "completion_tokens": 52},
        "Tiny",
        "ab" * 32,
    )
    with pytest.raises(RuntimeError):
        writer.append("too late")


def test_flush_and_interrupt(store: ConversationStore, db: Path) -> None:
    conversation = chat(store, "stream", "Go on.")
    monotonic = Clock(0.0)
    writer = store.start_reply(conversation, store.thread(conversation)[-1].id, clock=monotonic)
    writer.append("a")
    writer.append("b")
    assert saved_reply(db, writer.message_id)[0] == "a"
    writer.flush()  # what a UI timer calls while the stream pauses
    assert saved_reply(db, writer.message_id)[0] == "ab"
    writer.append("c")
    assert writer.interrupt().state == "interrupted"
    assert saved_reply(db, writer.message_id) == ("abc", None, "interrupted")


def test_reply_left_by_an_exception_is_interrupted(store: ConversationStore, db: Path) -> None:
    conversation = chat(store, "stream", "Go on.")
    with pytest.raises(ConnectionError), store.start_reply(conversation, store.thread(conversation)[-1].id) as writer:
        writer.append("partial")
        raise ConnectionError
    assert saved_reply(db, writer.message_id) == ("partial", None, "interrupted")


def probable(text: str, logprob: float = -0.25, token_id: int = 7) -> TokenProbability:
    """A token as the engine reports it, with three alternatives (log-probabilities exact in 4 decimals)."""
    alternatives = [TokenChoice(text, logprob, token_id), TokenChoice(" else", -1.5, 8), TokenChoice("é", -2.125, None)]
    return TokenProbability(text, logprob, alternatives, token_id)


def test_reply_tokens_are_saved_with_the_text_in_one_transaction(store: ConversationStore, db: Path) -> None:
    conversation = chat(store, "tokens", "Count.")
    monotonic = Clock(0.0)
    writer = store.start_reply(conversation, store.thread(conversation)[-1].id, clock=monotonic)
    assert store.reply_tokens(writer.message_id) is None  # nothing recorded yet: the token view is off so far
    sent = []
    for step in range(20):  # text, then its probabilities, as the window receives them
        monotonic.advance(0.25)
        piece = probable(f" w{step}", logprob=-step / 8)
        writer.append(piece.token)
        writer.append_tokens([piece])
        sent.append(piece)
        # Each save commits at once, so what the store reads is what a kill now would leave.
        saved = store.reply_tokens(writer.message_id) or ReplyTokens("")
        assert saved.before == ""
        # Saved at the text's pace, never ahead of it: a kill leaves tokens that are the start of the saved text.
        assert (
            saved_reply(db, writer.message_id)[0].startswith(saved.text) and saved.tokens == sent[: len(saved.tokens)]
        )
        assert len(sent) - len(saved.tokens) <= 4
    chunks = on_disk(db, "SELECT count(*) FROM reply_tokens WHERE message_id = ?", writer.message_id)[0][0]
    assert 1 < chunks <= 6  # a chunk a save: each save writes only what is new
    writer.finish()
    final = store.reply_tokens(writer.message_id)
    assert final == ReplyTokens("", sent) and final.text == store.get_message(writer.message_id).content


def test_a_continued_reply_adds_to_its_tokens_or_starts_afresh(store: ConversationStore) -> None:
    conversation = chat(store, "tokens", "Go.")
    with store.start_reply(conversation, store.thread(conversation)[-1].id) as writer:
        writer.append("One")
        writer.append_tokens([probable("One")])
        writer.finish()
    with store.continue_reply(writer.message_id) as more:  # its tokens cover its text: they go on
        more.append(" two")
        more.append_tokens([probable(" two")])
        more.finish()
    assert store.reply_tokens(writer.message_id) == ReplyTokens("", [probable("One"), probable(" two")])
    with store.continue_reply(writer.message_id) as off:  # the token view off: the record stays as it was
        off.append(" three")
        off.finish()
    assert store.reply_tokens(writer.message_id) == ReplyTokens("", [probable("One"), probable(" two")])
    with store.continue_reply(writer.message_id) as on_again:  # no longer covering the text: a new record
        on_again.append(" four")
        on_again.append_tokens([probable(" four")])
        on_again.finish()
    assert store.reply_tokens(writer.message_id) == ReplyTokens("One two three", [probable(" four")])


def test_a_branch_keeps_the_token_the_user_chose(db: Path, clock: Clock) -> None:
    with ConversationStore(db, now=clock) as store:
        conversation = chat(store, "what if", "Hi.", "Hello there")
        original = store.thread(conversation)[-1]
        branch = store.add_message(conversation, original.parent_id, "assistant", "Hello friend")
        writer = store.continue_reply(branch.id)
        chosen = probable(" friend", logprob=-3.0, token_id=99)
        writer.start_tokens(ReplyTokens("", [probable("Hello"), chosen], frozenset({1})))
        writer.append("!")
        writer.append_tokens([probable("!")])
        # Killed here: the record was saved at once, the chosen token marked; "!" was not saved yet, nor its token.
    with ConversationStore(db, now=clock) as store:
        assert store.reply_tokens(branch.id) == ReplyTokens("", [probable("Hello"), chosen], frozenset({1}))
        assert store.get_message(branch.id).content == "Hello friend"


def test_reply_tokens_go_with_their_message(store: ConversationStore, db: Path) -> None:
    conversation = chat(store, "gone", "Hi.")
    with store.start_reply(conversation, store.thread(conversation)[-1].id) as writer:
        writer.append("Hi")
        writer.append_tokens([probable("Hi")])
        writer.finish()
    kept = chat(store, "kept", "Hi.")
    with store.start_reply(kept, store.thread(kept)[-1].id) as other:
        other.append("Yo")
        other.append_tokens([probable("Yo")])
        other.finish()
    store.delete(conversation)
    assert store.reply_tokens(writer.message_id) is not None  # in the bin, still there to undo
    store.purge_deleted()
    assert on_disk(db, "SELECT DISTINCT message_id FROM reply_tokens") == [(other.message_id,)]
    assert integrity(db) == "ok"


def test_reply_left_streaming_is_interrupted_at_next_open(db: Path, clock: Clock) -> None:
    with ConversationStore(db, now=clock) as store:
        conversation = chat(store, "crash", "Hello?")
        writer = store.start_reply(conversation, store.thread(conversation)[-1].id)
        writer.append("Hel")
        # The app dies here: the writer is never finished.
    with ConversationStore(db, now=clock) as store:
        reply = store.get_message(writer.message_id)
    assert (reply.content, reply.state) == ("Hel", "interrupted")


# -- search ------------------------------------------------------------------------------------------------------


def test_search_finds_messages_with_their_ids(store: ConversationStore) -> None:
    france = chat(store, "Geography", "What is the capital of France?", "Paris is the capital of France.")
    chat(store, "Cooking", "How long do I boil an egg?", "About seven minutes.")
    question, answer = store.thread(france)
    hits = store.search("capital france")
    assert {(hit.conversation_id, hit.message_id, hit.title) for hit in hits} == {
        (france, question.id, "Geography"),
        (france, answer.id, "Geography"),
    }
    hit = next(hit for hit in hits if hit.message_id == answer.id)
    assert hit.role == "assistant"
    assert hit.snippet == "Paris is the capital of France."
    assert [hit.snippet[start:end] for start, end in hit.matches] == ["capital", "France"]
    assert hit.marked("[", "]") == "Paris is the [capital] of [France]."
    assert [hit.message_id for hit in store.search("EGG")] == [store.thread(france + 1)[0].id]
    assert [hit.message_id for hit in store.search("minu*")] == [store.thread(france + 1)[1].id]
    assert store.search("capital cooking") == []  # every word must match


def test_search_marks_safely_and_ignores_accents(store: ConversationStore) -> None:
    chat(store, "<b>title</b>", "Crème brûlée <script>alert(1)</script> recipe")
    (hit,) = store.search("creme brulee")
    assert hit.marked("<mark>", "</mark>", html.escape) == (
        "<mark>Crème</mark> <mark>brûlée</mark> &lt;script&gt;alert(1)&lt;/script&gt; recipe"
    )


@pytest.mark.parametrize(
    "query",
    ['"', "AND(", "*", "", "   ", "a AND", "OR", "NOT x", "NEAR(a b)", "content:x", "x^", "(", ")", "'", "\x00",
     "-", "+", "x*y", '""', "{a b}", ":", "^", "AND( OR NOT", "🙂", "\\"],
)  # fmt: skip
def test_hostile_queries_never_raise(store: ConversationStore, query: str) -> None:
    chat(store, "Some chat", "a AND b OR NOT c NEAR content x y")
    store.search(query)


def test_hostile_queries_match_literally(store: ConversationStore) -> None:
    conversation = chat(store, "ops", 'He said "NOT AND(" to the content: column')
    for query in ['"', "*", "", "  ", "(", "^"]:
        assert store.search(query) == []
    for query in ["AND(", "NOT", '"NOT', "content:", "AND( NOT"]:
        assert [hit.conversation_id for hit in store.search(query)] == [conversation], query


@pytest.mark.parametrize(
    ("typed", "query"),
    [
        ("capital France", '"capital" "France"'),
        ('say "hi', '"say" """hi"'),
        ("AND( OR", '"AND(" "OR"'),
        ("cap*", '"cap"*'),
        ('* ** " (', ""),
        ("nul\x00here", '"nul" "here"'),
    ],
)
def test_fts_query_quotes_every_word(typed: str, query: str) -> None:
    assert fts_query(typed) == query


# -- exports and imports -----------------------------------------------------------------------------------------


def branched(store: ConversationStore) -> int:
    """A conversation with every field set: two branches, reasoning, stats, an interrupted reply, a pin."""
    settings = ChatSettings(model="Tiny-Q4", system_prompt="Be brief.", temperature=0.2, seed=42, context_length=2048)
    conversation = store.create_conversation("Capitals <script>alert('t')</script>", settings).id
    question = store.add_message(conversation, None, "user", "Capital of France? <script>alert(1)</script>")
    reply = store.start_reply(conversation, question.id, model="Tiny-Q4", model_sha256="cd" * 32, settings=settings)
    reply.append_reasoning("They ask about <b>France</b>.")
    reply.append("**Paris**.")
    reply.finish({"ttft_ms": 10.0, "finish_reason": "stop"})
    edited = store.add_message(conversation, None, "user", "Capital of Italy?")
    cut = store.start_reply(conversation, edited.id, model="Tiny-Q4")
    cut.append("Ro")
    cut.interrupt()
    store.select_branch(conversation, question.id)
    store.set_pinned(conversation, True)
    return conversation


def test_markdown_export_shows_the_branch_on_show(store: ConversationStore) -> None:
    text = store.export_markdown(branched(store))
    assert text.startswith("# Capitals <script>alert('t')</script>\n")
    assert "## System prompt\n\nBe brief." in text
    assert "## You\n\nCapital of France?" in text
    assert "## Assistant · Tiny-Q4" in text
    assert "**Paris**." in text and "They ask about <b>France</b>." in text
    assert "Italy" not in text  # the other branch is in the JSON export only


def test_html_export_escapes_everything_and_loads_nothing(store: ConversationStore) -> None:
    page = store.export_html(branched(store))
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;France&lt;/b&gt;" in page
    assert "<title>Capitals &lt;script&gt;alert(&#x27;t&#x27;)&lt;/script&gt;</title>" in page
    for remote in ("http://", "https://", "src=", "href=", "@import", "url("):
        assert remote not in page
    assert "default-src 'none'" in page


def test_json_export_round_trips(store: ConversationStore, clock: Clock) -> None:
    original = branched(store)
    exported = store.export_json(original)
    assert exported["format"] == EXPORT_FORMAT and exported["schema_version"] == 1
    (document,) = exported["conversations"]
    assert document["pinned"] is True and document["settings"]["seed"] == 42
    assert [
        (message["id"], message["parent"], message["role"], message["state"]) for message in document["messages"]
    ] == [
        (1, None, "user", "complete"),
        (2, 1, "assistant", "complete"),
        (3, None, "user", "complete"),
        (4, 3, "assistant", "interrupted"),
    ]
    assert document["selected_leaf"] == 2
    assert document["messages"][1]["stats"] == {"ttft_ms": 10.0, "finish_reason": "stop"}
    assert document["messages"][1]["model_sha256"] == "cd" * 32
    assert document["messages"][1]["reasoning"] == "They ask about <b>France</b>."

    clock.advance(3600)
    text = json.dumps(exported)  # what a file holds
    (copy,) = store.import_json(json.loads(text))
    assert copy != original
    again = store.export_json(copy)
    assert again.pop("exported_at") != exported.pop("exported_at")
    assert again == exported  # ids count from 1 per conversation, and times are kept
    assert [message.content for message in store.thread(copy)] == [
        "Capital of France? <script>alert(1)</script>",
        "**Paris**.",
    ]


def test_export_all_and_import_all(tmp_path: Path, store: ConversationStore) -> None:
    branched(store)
    chat(store, "second", "hello", "hi")
    binned = chat(store, "binned", "bye")
    store.delete(binned)
    everything = store.export_all_json()
    assert [document["title"] for document in everything["conversations"]] == [
        "Capitals <script>alert('t')</script>",
        "second",
    ]
    with ConversationStore(tmp_path / "elsewhere.sqlite3") as other:
        assert len(other.import_json(everything)) == 2
        moved = other.export_all_json()
    assert moved["conversations"] == everything["conversations"]


def test_openai_messages_import(store: ConversationStore) -> None:
    conversation = store.import_openai_messages(
        [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is in"}, {"type": "text", "text": "this?"},
                                         {"type": "image_url", "image_url": {"url": "data:..."}}]},
            {"role": "assistant", "content": "A cat.", "reasoning_content": "Looks furry."},
            {"role": "assistant", "content": None, "tool_calls": []},
        ]
    )  # fmt: skip
    thread = store.thread(conversation)
    assert [(message.role, message.content) for message in thread] == [
        ("system", "Be brief."),
        ("user", "What is in\n\nthis?\n\n[image_url omitted]"),
        ("assistant", "A cat."),
        ("assistant", ""),
    ]
    assert thread[2].reasoning == "Looks furry."
    assert [message.parent_id for message in thread[1:]] == [message.id for message in thread[:-1]]
    assert store.get(conversation).title == "What is in this? [image_url omitted]"
    named = store.import_openai_messages({"messages": [{"role": "user", "content": "hi"}]}, title="Named")
    assert store.get(named).title == "Named"


def export_of(conversations_: object, **envelope: Any) -> dict[str, Any]:
    return {"format": EXPORT_FORMAT, "schema_version": 1, "conversations": conversations_, **envelope}


def good_message(**fields: Any) -> dict[str, Any]:
    return {"id": 1, "parent": None, "role": "user", "content": "hi", **fields}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("just text", "not a JSON object"),
        ([{"role": "user", "content": "hi"}], "OpenAI-style"),
        ({"format": "something else", "schema_version": 1, "conversations": []}, "not a localai-app conversation"),
        (export_of([], schema_version=2), "newer version"),
        (export_of([], schema_version="1"), '"schema_version" must be a whole number'),
        (export_of({}), '"conversations" must be a list'),
        (export_of(["x"]), "Conversation 1 is not a JSON object"),
        (export_of([{"title": 5, "messages": []}]), '"title" must be text, not a number'),
        (export_of([{"messages": "many"}]), '"messages" must be a list'),
        (
            export_of([{"messages": [good_message(role="tool")]}]),
            'message 1: "role" must be one of system, user, assistant, not "tool"',
        ),
        (export_of([{"messages": [good_message(content=None)]}]), 'message 1: "content" must be text, not null'),
        (export_of([{"messages": [good_message(parent=2)]}]), '"parent" must be null or the id of a message listed'),
        (export_of([{"messages": [good_message(), good_message()]}]), 'message 2: "id" must be a whole number not'),
        (export_of([{"messages": [good_message(id="1")]}]), '"id" must be a whole number'),
        (export_of([{"messages": [good_message(state="done")]}]), '"state" must be one of'),
        (export_of([{"created_at": "yesterday", "messages": []}]), '"created_at" must be an ISO 8601 time'),
        (export_of([{"settings": {"temperature": "hot"}, "messages": []}]), 'setting "temperature" must be a number'),
        (export_of([{"settings": {"seed": True}, "messages": []}]), 'setting "seed" must be a whole number or null'),
        (export_of([{"messages": [good_message(stats=[1])]}]), '"stats" must be a JSON object or null'),
        (export_of([{"messages": [], "selected_leaf": 3}]), '"selected_leaf" must be null or the id'),
        (export_of([{"messages": [], "pinned": "yes"}]), '"pinned" must be true or false'),
    ],
)
def test_bad_json_imports_say_what_is_wrong(store: ConversationStore, data: object, says: str) -> None:
    with pytest.raises(ImportFormatError, match=says.replace("(", r"\(")) as raised:
        store.import_json(data)
    assert str(raised.value).endswith(".")
    assert store.list_conversations() == []


def test_the_documented_example_imports_and_exports_unchanged(store: ConversationStore) -> None:
    document = (Path(__file__).parents[2] / "docs" / "conversation-format.md").read_text(encoding="utf-8")
    example = json.loads(document.split("```json\n")[1].split("```")[0])
    (conversation,) = store.import_json(example)
    assert [message.content for message in store.thread(conversation)] == ["Capital of France?", "Paris."]
    exported = store.export_json(conversation)
    for volatile in ("exported_at", "generator"):
        exported.pop(volatile), example.pop(volatile)
    assert exported == example


def test_a_bad_conversation_imports_nothing(store: ConversationStore) -> None:
    good = {"title": "fine", "messages": [good_message()]}
    bad = {"title": "broken", "messages": [good_message(role="robot")]}
    with pytest.raises(ImportFormatError, match="Conversation 2, message 1"):
        store.import_json(export_of([good, bad]))
    assert store.list_conversations() == []


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("hello", "Expected a list"),
        ([], "no messages"),
        ([{"role": "tool", "content": "42"}], "role 'tool'"),
        (["hi"], "Message 1 is not a JSON object"),
        ([{"content": "hi"}], '"role" must be text'),
        ([{"role": "user", "content": 7}], '"content" must be text or a list of parts'),
        ([{"role": "user", "content": [{"type": "text"}]}], 'Message 1, part 1: "text" must be text'),
    ],
)
def test_bad_openai_imports_say_what_is_wrong(store: ConversationStore, data: object, says: str) -> None:
    with pytest.raises(ImportFormatError, match=says):
        store.import_openai_messages(data)
    assert store.list_conversations() == []


# -- files: versions, damage, recovery, backup -------------------------------------------------------------------


def test_a_newer_file_is_refused_and_left_untouched(db: Path) -> None:
    with ConversationStore(db) as store:
        chat(store, "from the future", "hello")
    with closing(sqlite3.connect(db)) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = digest(db)
    with pytest.raises(NewerStoreError, match="newer version of localai-app"):
        ConversationStore(db)
    assert digest(db) == before
    assert sorted(path.name for path in db.parent.iterdir()) == [db.name]


def test_a_newer_version_still_in_the_wal_is_refused(db: Path) -> None:
    with ConversationStore(db) as store:
        chat(store, "from the future", "hello")
    before = digest(db)
    with closing(sqlite3.connect(db)) as newer_app:  # still running: its change is in the -wal, not the file
        newer_app.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(NewerStoreError):
            ConversationStore(db)
        assert digest(db) == before


def test_a_file_that_is_not_a_database_is_moved_aside(db: Path, clock: Clock) -> None:
    db.write_bytes(b"this is not SQLite at all" * 100)
    db.with_name(db.name + "-wal").write_bytes(b"old wal")
    db.with_name(db.name + "-shm").write_bytes(b"old shm")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(START))
    taken = db.with_name(f"conversations.damaged-{stamp}.sqlite3")
    taken.write_bytes(b"an earlier quarantine")  # never overwritten

    with ConversationStore(db, now=clock) as store:
        aside = store.quarantined
        assert aside is not None and aside != taken
        assert aside.name == taken.name.replace(".sqlite3", "-2.sqlite3")
        chat(store, "fresh", "a new start")
        assert [item.title for item in store.list_conversations()] == ["fresh"]
        assert store.recover_from(aside) == 0  # nothing in it can be read
    assert aside.read_bytes() == b"this is not SQLite at all" * 100
    assert aside.with_name(aside.name + "-wal").read_bytes() == b"old wal"
    assert aside.with_name(aside.name + "-shm").read_bytes() == b"old shm"
    assert taken.read_bytes() == b"an earlier quarantine"
    with ConversationStore(db, now=clock) as store:
        assert store.quarantined is None


def corrupt_page_of(db: Path, index_name: str) -> None:
    """Overwrites the root page of an index: quick_check fails while every table row stays readable."""
    with closing(sqlite3.connect(db)) as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        (root,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index_name,)).fetchone()
    with db.open("r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xa5" * page_size)


def test_a_damaged_database_is_quarantined_and_recovered(db: Path, clock: Clock) -> None:
    with ConversationStore(db, now=clock) as store:
        first = branched(store)
        second = chat(store, "second", "one", "two", "three")
        expected = {conversation: store.export_json(conversation)["conversations"] for conversation in (first, second)}
    corrupt_page_of(db, "messages_by_parent")

    with ConversationStore(db, now=clock) as store:
        aside = store.quarantined
        assert aside is not None and aside.exists() and aside.name.startswith("conversations.damaged-")
        assert store.list_conversations() == []
        before = digest(aside)
        assert store.recover_from(aside) == 7
        assert digest(aside) == before  # read from a copy
        recovered = store.export_all_json()["conversations"]
        assert integrity(db) == "ok"
    assert recovered == expected[first] + expected[second]


def test_recovery_skips_what_cannot_be_read(db: Path, tmp_path: Path) -> None:
    with ConversationStore(db) as store:
        conversation = store.create_conversation("big").id
        parent = None
        for number in range(300):
            parent = store.add_message(conversation, parent, "user", f"message {number} " + "x" * 500).id
    damaged = tmp_path / "truncated.sqlite3"
    data = db.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])

    with ConversationStore(tmp_path / "new.sqlite3") as store:
        recovered = store.recover_from(damaged)
        assert 0 < recovered < 300
        thread = store.thread(store.list_conversations()[0].id)
    assert len(thread) == recovered
    assert all(message.content.startswith("message ") for message in thread)


def test_recovery_reads_past_a_damaged_page(db: Path, tmp_path: Path) -> None:
    with ConversationStore(db) as store:
        conversation = store.create_conversation("big").id
        parent = None
        for number in range(300):
            parent = store.add_message(conversation, parent, "user", f"message {number} " + "x" * 500).id
    with closing(sqlite3.connect(db)) as connection:
        try:
            leaves = connection.execute(
                "SELECT pageno FROM dbstat WHERE name = 'messages' AND pagetype = 'leaf' ORDER BY pageno"
            ).fetchall()
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table to find a page with")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    (middle,) = leaves[len(leaves) // 2]
    with db.open("r+b") as handle:
        handle.seek((middle - 1) * page_size)
        handle.write(b"\xa5" * page_size)

    with ConversationStore(db) as store:
        assert store.quarantined is not None
        recovered = store.recover_from(store.quarantined)
        numbers = [int(message.content.split()[1]) for message in store.thread(store.list_conversations()[0].id)]
    assert 250 < recovered < 300  # one page of rows lost, those after it found again
    assert numbers == sorted(numbers) and numbers[0] == 0 and numbers[-1] == 299
    assert len(numbers) == recovered  # messages whose parent was lost hang under the one before


def test_recover_from_a_missing_file(store: ConversationStore, tmp_path: Path) -> None:
    with pytest.raises(ConversationStoreError, match="no file"):
        store.recover_from(tmp_path / "nothing.sqlite3")


def test_backup_while_another_thread_writes(store: ConversationStore, tmp_path: Path) -> None:
    conversation = chat(store, "busy", "start")
    stop = threading.Event()
    written = [0]

    def write() -> None:  # a reply streaming on another thread, saved on every token
        writer = store.start_reply(conversation, store.thread(conversation)[-1].id, save_interval=0)
        while not stop.is_set():
            writer.append("more text " * 20)
            written[0] += 1
        writer.finish()

    thread = threading.Thread(target=write)
    thread.start()
    targets = [tmp_path / f"backup-{number}.sqlite3" for number in range(5)]
    try:
        for target in targets:
            seen = written[0]
            while written[0] < seen + 3 and thread.is_alive():  # let some saves land between backups
                time.sleep(0.001)
            store.backup(target)
    finally:
        stop.set()
        thread.join()
    lengths = []
    for target in targets:
        assert integrity(target) == "ok"
        with ConversationStore(target) as copy:
            assert copy.quarantined is None
            reply = copy.thread(conversation)[-1]
            assert reply.state == "interrupted"  # a backup taken mid-stream reopens like a crash
            lengths.append(len(reply.content))
    assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths)
    store.backup(targets[0])  # replaces an earlier backup
    with ConversationStore(targets[0]) as copy:
        assert copy.thread(conversation)[-1].state == "complete"


def test_the_v1_fixture_opens_with_all_its_rows(db: Path, clock: Clock) -> None:
    load_v1_fixture(db)
    with ConversationStore(db, now=clock) as store:
        assert store.quarantined is None
        assert [item.title for item in store.list_conversations()] == ["Old chat", "Capital cities"]
        assert [item.title for item in store.list_conversations(deleted=True)] == ["In the bin"]
        capitals = store.list_conversations()[1]
        assert capitals.settings == ChatSettings(
            model="Tiny-Q4_K_M", system_prompt="Answer briefly.", temperature=0.2, seed=7
        )
        assert [message.content for message in store.thread(capitals.id)] == [
            "What is the capital of France?",
            "Paris.",
        ]
        assert store.get_message(4).state == "interrupted"  # left streaming by a killed app
        assert store.get_message(2).stats == {
            "completion_tokens": 3, "finish_reason": "stop", "notes": [], "prompt_tokens": 18,
            "tokens_per_second": 52.1, "total_ms": 99.0, "ttft_ms": 41.5,
        }  # fmt: skip
        assert [hit.message_id for hit in store.search("eternal")] == [4]
        assert [preset.name for preset in store.presets()] == ["Balanced", "Precise", "Creative"]
        # Version 2 added the token view's records: a reply of the old file can have one now.
        paris = TokenProbability(" Paris", -0.1, [TokenChoice(" Paris", -0.1, 9)], 9)
        writer = store.continue_reply(2)  # "Paris." was written with the token view off
        writer.append(" Paris")
        writer.append_tokens([paris])
        writer.finish(store.get_message(2).stats)
        assert store.reply_tokens(2) == ReplyTokens("Paris.", [paris])
        assert store.reply_tokens(1) is None
    assert on_disk(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(2,)]
    # The file as it was, kept aside before the migration.
    assert [path.name for path in db.parent.glob("*.before-v*")] == ["conversations.before-v2.sqlite3"]
    assert on_disk(db.with_name("conversations.before-v2.sqlite3"), "PRAGMA user_version") == [(1,)]

    with ConversationStore(db.with_name("fresh.sqlite3")):
        pass
    assert schema_of(db) == schema_of(db.with_name("fresh.sqlite3"))  # migrated files match new ones


def schema_of(db: Path) -> list[tuple[str, str]]:
    return on_disk(db, "SELECT name, sql FROM sqlite_master ORDER BY name")


def test_a_migration_backs_up_first_and_runs_in_one_transaction(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_v1_fixture(db)
    shipped = list(conversations.MIGRATIONS)
    # A next version that fails half-way: its first statement must not stay; the shipped ones before it do.
    broken = "ALTER TABLE conversations ADD COLUMN colour TEXT;\nINSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr(conversations, "MIGRATIONS", [*shipped, broken])
    with pytest.raises(ConversationStoreError, match=r"Could not open conversations\.sqlite3"):
        ConversationStore(db)
    assert on_disk(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert "colour" not in on_disk(db, "SELECT sql FROM sqlite_master WHERE name = 'conversations'")[0][0]
    backup = db.with_name(f"conversations.before-v{SCHEMA_VERSION + 1}.sqlite3")
    assert on_disk(backup, "PRAGMA user_version") == [(SCHEMA_VERSION,)]

    def add_colour(connection: sqlite3.Connection) -> None:  # a migration may be a function too
        connection.execute("ALTER TABLE conversations ADD COLUMN colour TEXT")
        connection.execute("UPDATE conversations SET colour = 'blue'")

    monkeypatch.setattr(conversations, "MIGRATIONS", [*shipped, add_colour])
    with ConversationStore(db) as store:
        assert len(store.list_conversations()) == 2
    assert on_disk(db, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]
    assert on_disk(db, "SELECT DISTINCT colour FROM conversations") == [("blue",)]
    second_backup = db.with_name(f"conversations.before-v{SCHEMA_VERSION + 1}-2.sqlite3")  # the first one is kept
    assert on_disk(second_backup, "SELECT count(*) FROM messages") == [(6,)]
    assert integrity(second_backup) == "ok"


def test_a_new_file_gets_no_backup(db: Path) -> None:
    with ConversationStore(db):
        pass
    assert sorted(path.name for path in db.parent.iterdir() if "before" in path.name) == []
