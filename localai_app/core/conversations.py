"""Conversations on disk: one SQLite file holding every chat as a tree of messages, with search and exports.

Durability is SQLite's (WAL, synchronous=FULL, short transactions). A reply being streamed is saved at once for
its first text and then at most once per `SAVE_INTERVAL`, so killing the app at any moment loses at most the last
second of it; the next open marks it "interrupted". A damaged file is moved aside (never overwritten, never
deleted), a fresh one is started, and `recover_from` copies back whatever can still be read.

Messages form a tree: a message's siblings are alternative versions of it (an edited question, a regenerated
reply), and each conversation remembers the leaf of the branch on show. The JSON export format is described in
docs/conversation-format.md.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast, get_args, get_type_hints

from localai_app import __version__
from localai_app.core.errors import (
    ConversationStoreError,
    ImportFormatError,
    NewerStoreError,
    UnknownConversationError,
)
from localai_app.core.replies import SamplingOptions, TokenProbability
from localai_app.core.reply_tokens import ReplyTokens, decode_chunk, encode_chunk

log = logging.getLogger(__name__)

STORE_FILE = "conversations.sqlite3"  # under AppPaths.data
SAVE_INTERVAL = 1.0  # seconds of streamed text a kill may lose
BUSY_TIMEOUT = 5.0  # seconds to wait for another connection's write (a backup, a second window) before failing
EXPORT_FORMAT = "localai-app/conversations"
EXPORT_VERSION = 1  # of the JSON export format; independent of the database schema

Role = Literal["system", "user", "assistant"]
State = Literal["complete", "streaming", "interrupted"]
ROLES: tuple[Role, ...] = get_args(Role)
STATES: tuple[State, ...] = get_args(State)

# SQLite's primary result codes: the low byte of an error's extended code.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_SQLITE_FULL = 13
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_LARGEST_ID = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# snippet() brackets each match with these; they never survive into what callers see.
_MATCH_START, _MATCH_END = "\x02", "\x03"
CHAT_LAYOUT, SIDE_BY_SIDE = "chat", "side_by_side"  # ChatSettings.layout: how a conversation is shown


# -- values ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatSettings:
    """How a conversation's replies are generated; each reply keeps a copy, so it can be reproduced."""

    model: str | None = None
    system_prompt: str = ""
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int | None = None
    max_tokens: int = 512
    context_length: int | None = None  # None: chosen at load from the model and the free memory
    context_policy: str = "drop_oldest"  # when the context is full: core/context.py's DROP_OLDEST or STOP
    layout: str = CHAT_LAYOUT  # SIDE_BY_SIDE: two panes, two replies to each question (core/side_by_side.py)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sampling(self) -> SamplingOptions:
        """What the engine is asked to sample with."""
        return SamplingOptions(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
            seed=self.seed,
        )

    @classmethod
    def from_dict(cls, raw: object) -> ChatSettings:
        """Lenient: unknown keys are dropped and a value of the wrong type keeps its default (and is logged)."""
        values, problems = _setting_values(raw)
        for problem in problems:
            log.warning("conversations: ignoring a stored setting: %s", problem)
        return replace(cls(), **values)


@dataclass(frozen=True)
class Preset:
    """A named set of settings; it holds only the values it sets, so applying it keeps the model and the rest."""

    name: str
    values: dict[str, Any]

    def apply(self, settings: ChatSettings) -> ChatSettings:
        return replace(settings, **self.values)


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created_at: float  # Unix seconds, like every time here
    updated_at: float  # when a message was last added: what the list is sorted by (renaming does not move it)
    pinned: bool
    deleted_at: float | None  # in the bin since then; None when not deleted
    settings: ChatSettings
    leaf_id: int | None  # last message of the branch on show; None for an empty conversation


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    parent_id: int | None  # None for a first message; siblings share a parent and are versions of each other
    role: Role
    content: str
    reasoning: str | None  # the model's <think> section, kept apart from the answer
    state: State
    created_at: float
    model: str | None = None
    model_sha256: str | None = None
    settings: ChatSettings | None = None  # what generated this reply
    stats: dict[str, Any] | None = None  # its timings (ReplyStats.as_dict())


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    title: str
    message_id: int
    role: Role
    snippet: str  # plain text around the match, "…" where cut
    matches: tuple[tuple[int, int], ...]  # (start, end) of each matched word in `snippet`

    def marked(self, before: str, after: str, escape: Callable[[str], str] = str) -> str:
        """The snippet with each match wrapped, e.g. `marked("<b>", "</b>", html.escape)` for rich text."""
        pieces: list[str] = []
        position = 0
        for start, end in self.matches:
            pieces += [escape(self.snippet[position:start]), before, escape(self.snippet[start:end]), after]
            position = end
        pieces.append(escape(self.snippet[position:]))
        return "".join(pieces)


# -- schema ------------------------------------------------------------------------------------------------------

_DEFAULT_PRESETS: dict[str, dict[str, Any]] = {
    "Balanced": {"temperature": 0.7, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0},
    "Precise": {"temperature": 0.2, "top_p": 0.9, "top_k": 20, "min_p": 0.1, "repeat_penalty": 1.05},
    "Creative": {"temperature": 1.0, "top_p": 0.98, "top_k": 100, "min_p": 0.02, "repeat_penalty": 1.0},
}

# Times are Unix milliseconds (exact through the ISO-8601 export); settings and stats are JSON text.
# messages.parent_id deliberately has no ON DELETE CASCADE: cascading down a long chain hits SQLite's trigger depth
# limit ("too many levels of trigger recursion") after 1,000 messages; deleting a conversation removes all its
# messages in one statement instead.
_SCHEMA_V1 = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
    deleted_at INTEGER,
    settings TEXT NOT NULL DEFAULT '{}',
    leaf_id INTEGER REFERENCES messages (id) ON DELETE SET NULL
);
CREATE INDEX conversations_by_activity ON conversations (deleted_at, pinned, updated_at);
CREATE INDEX conversations_by_leaf ON conversations (leaf_id);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    parent_id INTEGER REFERENCES messages (id),
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content TEXT NOT NULL DEFAULT '',
    reasoning TEXT,
    state TEXT NOT NULL DEFAULT 'complete' CHECK (state IN ('complete', 'streaming', 'interrupted')),
    created_at INTEGER NOT NULL,
    model TEXT,
    model_sha256 TEXT,
    settings TEXT,
    stats TEXT
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, parent_id);
CREATE INDEX messages_by_parent ON messages (parent_id);
CREATE INDEX messages_streaming ON messages (state) WHERE state = 'streaming';

CREATE TRIGGER messages_parent_in_same_conversation BEFORE INSERT ON messages
WHEN new.parent_id IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM messages WHERE id = new.parent_id AND conversation_id = new.conversation_id)
BEGIN
    SELECT RAISE(ABORT, 'a message''s parent must be in the same conversation');
END;

CREATE VIRTUAL TABLE messages_fts USING fts5 (
    content, content = 'messages', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;

CREATE TABLE presets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    settings TEXT NOT NULL
);
""" + "".join(
    f"INSERT INTO presets (name, settings) VALUES ('{name}', '{json.dumps(values)}');\n"
    for name, values in _DEFAULT_PRESETS.items()
)

# Version 2: the token view's record of a reply (core/reply_tokens.py), in chunks added as the reply streams: large
# (about 100 bytes a token), so in a table of its own that reading and searching messages never touch; removed with
# its message. `before` is set on the first chunk only.
_REPLY_TOKENS_V2 = """
CREATE TABLE reply_tokens (
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    first INTEGER NOT NULL,
    before TEXT,
    tokens BLOB NOT NULL,
    PRIMARY KEY (message_id, first)
) WITHOUT ROWID;
"""

Migration = str | Callable[[sqlite3.Connection], None]
# MIGRATIONS[n] takes the database from user_version n to n + 1, in one transaction. Append; never edit one that
# has shipped (tests/fixtures/conversations-v1.sql holds version 1 as shipped).
MIGRATIONS: list[Migration] = [_SCHEMA_V1, _REPLY_TOKENS_V2]
SCHEMA_VERSION = len(MIGRATIONS)


def _latest_version() -> int:
    return len(MIGRATIONS)  # read at each open, so a test can append a migration


# -- the store ---------------------------------------------------------------------------------------------------


class ConversationStore:
    """Every conversation in one SQLite file. Safe to share between threads (one connection behind a lock)."""

    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        self.path = path.expanduser().resolve()
        self._now = now
        self._lock = threading.RLock()
        # Where the damaged file found at open was moved; None when the file was fine. The UI says so and
        # offers recover_from().
        self.quarantined: Path | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._check_file()
        except _DamagedError as damage:
            self.quarantined = self._quarantine(str(damage))
        connection = _connect(self.path)
        try:
            self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def close(self) -> None:
        with self._lock:
            try:
                self._connection.execute("PRAGMA optimize")  # keeps the query planner's statistics current
            except sqlite3.Error:
                log.debug("conversations: PRAGMA optimize failed at close", exc_info=True)
            self._connection.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- opening -----------------------------------------------------------------------------------------------

    def _check_file(self) -> None:
        """Refuses a file from a newer app and raises _DamagedError for a broken one, writing to neither.

        The header is read by hand first, so a file that is not SQLite, or is plainly newer, is never opened at all.
        The rest is checked through a read-only connection, because closing a writable one checkpoints the -wal
        into the file and deletes it: a damaged file must be moved aside as it was found.
        """
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb") as handle:
            header = handle.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
            raise _DamagedError("not an SQLite database")
        self._check_version(int.from_bytes(header[60:64], "big", signed=True))
        try:
            connection = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        except sqlite3.Error as error:
            raise _store_error(error, f"Could not open {self.path.name}") from error
        try:
            # Again through SQLite: after a crash the newest user_version may still be in the -wal.
            self._check_version(connection.execute("PRAGMA user_version").fetchone()[0])
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise _DamagedError("; ".join(problems[:3]))
        except sqlite3.DatabaseError as error:
            if _is_damage(error):
                raise _DamagedError(str(error)) from error
            raise _store_error(error, f"Could not open {self.path.name}") from error
        finally:
            connection.close()

    def _check_version(self, version: int) -> None:
        if version > _latest_version():
            raise NewerStoreError(
                f"{self.path.name} was saved by a newer version of localai-app (format {version}; this version "
                f"reads up to {_latest_version()}): update the app to open your conversations."
            )

    def _quarantine(self, reason: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self._now()))
        aside = _unused_path(self.path.with_name(f"{self.path.stem}.damaged-{stamp}{self.path.suffix}"))
        log.warning("conversations: %s is damaged (%s); moved to %s and starting afresh", self.path, reason, aside)
        # The -wal holds the latest committed writes and belongs with its database; the -shm is only an index of it.
        for suffix in ("", "-wal", "-shm"):
            source = self.path.with_name(self.path.name + suffix)
            if source.exists():
                source.rename(aside.with_name(aside.name + suffix))
        return aside

    def _prepare(self, connection: sqlite3.Connection) -> None:
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":  # e.g. a network file system without shared memory: still correct, only slower
                log.warning("conversations: journal mode is %s, not WAL", mode)
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")
            self._migrate(connection)
            # Nothing can still be streaming into a file we have only just opened: the app or engine was killed.
            connection.execute("UPDATE messages SET state = 'interrupted' WHERE state = 'streaming'")
        except sqlite3.Error as error:
            raise _store_error(error, f"Could not open {self.path.name}") from error

    def _migrate(self, connection: sqlite3.Connection) -> None:
        new_file = not connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]  # nothing to back up
        while True:
            version: int = connection.execute("PRAGMA user_version").fetchone()[0]
            if version >= _latest_version():
                return
            if not new_file:
                backup = _unused_path(self.path.with_name(f"{self.path.stem}.before-v{version + 1}{self.path.suffix}"))
                log.info("conversations: backing up to %s before migrating to version %d", backup, version + 1)
                _backup_to(connection, backup)
            _apply(connection, version, MIGRATIONS[version])

    # -- transactions --------------------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short IMMEDIATE transaction: it takes the write lock up front, so it never fails half-way on BUSY."""
        with self._lock, _sentences("Could not save your conversations"):
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, _sentences("Could not read your conversations"):
            yield self._connection

    def _now_ms(self) -> int:
        return round(self._now() * 1000)

    # -- conversations -------------------------------------------------------------------------------------------

    def create_conversation(self, title: str = "", settings: ChatSettings | None = None) -> Conversation:
        now = self._now_ms()
        with self._write() as connection:
            cursor = connection.execute(
                "INSERT INTO conversations (title, created_at, updated_at, settings) VALUES (?, ?, ?, ?)",
                (title.strip(), now, now, _dumps((settings or ChatSettings()).as_dict())),
            )
            conversation_id = _row_id(cursor)
        return self.get(conversation_id)

    def get(self, conversation_id: int) -> Conversation:
        with self._read() as connection:
            row = connection.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise UnknownConversationError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
        return _conversation(row)

    def list_conversations(self, *, deleted: bool = False) -> list[Conversation]:
        """Pinned first, then the most recently active; `deleted=True` lists the bin, most recently deleted first."""
        query = (
            "SELECT * FROM conversations WHERE deleted_at IS NOT NULL ORDER BY deleted_at DESC, id DESC"
            if deleted
            else "SELECT * FROM conversations WHERE deleted_at IS NULL ORDER BY pinned DESC, updated_at DESC, id DESC"
        )
        with self._read() as connection:
            return [_conversation(row) for row in connection.execute(query)]

    def rename(self, conversation_id: int, title: str) -> None:
        self._set(conversation_id, "title", title.strip())

    def set_pinned(self, conversation_id: int, pinned: bool) -> None:
        self._set(conversation_id, "pinned", int(pinned))

    def update_settings(self, conversation_id: int, settings: ChatSettings) -> None:
        self._set(conversation_id, "settings", _dumps(settings.as_dict()))

    def delete(self, conversation_id: int) -> None:
        """Moves the conversation to the bin; `undo_delete` brings it back until `purge_deleted` removes it."""
        with self._write() as connection:
            cursor = connection.execute(
                "UPDATE conversations SET deleted_at = coalesce(deleted_at, ?) WHERE id = ?",
                (self._now_ms(), conversation_id),
            )
            _found(cursor, conversation_id)

    def undo_delete(self, conversation_id: int) -> None:
        self._set(conversation_id, "deleted_at", None)

    def purge_deleted(self, older_than: float = 0.0) -> int:
        """Removes for good the conversations in the bin for at least `older_than` seconds; returns how many."""
        cutoff = self._now_ms() - round(older_than * 1000)
        with self._write() as connection:
            cursor = connection.execute(
                "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= ?", (cutoff,)
            )
            return cursor.rowcount

    def _set(self, conversation_id: int, column: str, value: object) -> None:
        with self._write() as connection:
            cursor = connection.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?", (value, conversation_id))
            _found(cursor, conversation_id)

    # -- presets -------------------------------------------------------------------------------------------------

    def presets(self) -> list[Preset]:
        with self._read() as connection:
            rows = connection.execute("SELECT name, settings FROM presets ORDER BY id").fetchall()
        return [Preset(row["name"], _setting_values(_loads(row["settings"]))[0]) for row in rows]

    def save_preset(self, name: str, values: Mapping[str, Any]) -> Preset:
        """Creates or replaces the preset called `name` (case-insensitively). Raises ValueError for bad values."""
        checked, problems = _setting_values(values)
        if problems or not name.strip():
            raise ValueError(f"bad preset {name!r}: {'; '.join(problems) or 'empty name'}")
        with self._write() as connection:
            connection.execute(
                "INSERT INTO presets (name, settings) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET name = excluded.name, settings = excluded.settings",
                (name.strip(), _dumps(checked)),
            )
        return Preset(name.strip(), checked)

    def delete_preset(self, name: str) -> None:
        with self._write() as connection:
            connection.execute("DELETE FROM presets WHERE name = ?", (name,))

    # -- messages ------------------------------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        parent_id: int | None,
        role: Role,
        content: str,
        *,
        reasoning: str | None = None,
        state: State = "complete",
        model: str | None = None,
        model_sha256: str | None = None,
        settings: ChatSettings | None = None,
        stats: Mapping[str, Any] | None = None,
    ) -> Message:
        """Adds a message under `parent_id` (None: a first message) and shows its branch.

        A second child of the same parent is an alternative version: editing a question adds a sibling of it,
        regenerating a reply adds a sibling of the reply.
        """
        if role not in ROLES or state not in STATES:
            raise ValueError(f"bad message role {role!r} or state {state!r}")
        with self._write() as connection:
            self._check_member(connection, conversation_id, parent_id)
            now = self._now_ms()
            message_id = _insert_message(
                connection,
                conversation_id,
                parent_id,
                _NewMessage(0, None, role, content, reasoning, state, now, model, model_sha256, settings, stats),
            )
            connection.execute(
                "UPDATE conversations SET leaf_id = ?, updated_at = max(updated_at, ?) WHERE id = ?",
                (message_id, now, conversation_id),
            )
        return self.get_message(message_id)

    def get_message(self, message_id: int) -> Message:
        with self._read() as connection:
            row = connection.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise UnknownConversationError(f"Message {message_id} does not exist (it may have been deleted).")
        return _message(row)

    def children(self, message_id: int) -> list[Message]:
        """Replies to (or versions following) a message, oldest first."""
        with self._read() as connection:
            rows = connection.execute("SELECT * FROM messages WHERE parent_id = ? ORDER BY id", (message_id,))
            return [_message(row) for row in rows]

    def siblings(self, message_id: int) -> list[Message]:
        """The versions of a message, itself included, oldest first: what a "2 of 3" switch flips through."""
        message = self.get_message(message_id)
        with self._read() as connection:
            rows = connection.execute(
                "SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
                (message.conversation_id, message.parent_id),
            )
            return [_message(row) for row in rows]

    def versions(self, conversation_id: int) -> dict[int, tuple[int, int]]:
        """For every message that has other versions: (which, of how many), oldest first; one query for all."""
        with self._read() as connection:
            rows = connection.execute(
                "SELECT id, parent_id FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        families: dict[int | None, list[int]] = {}
        for row in rows:
            families.setdefault(row["parent_id"], []).append(row["id"])
        return {
            message_id: (index, len(family))
            for family in families.values()
            if len(family) > 1
            for index, message_id in enumerate(family, start=1)
        }

    def leaf_under(self, message_id: int) -> Message:
        """The end of the branch through `message_id`, following the most recent child at each step."""
        self.get_message(message_id)
        with self._read() as connection:
            leaf_id = _leaf_under(connection, message_id)
        return self.get_message(leaf_id)

    def thread(self, conversation_id: int) -> list[Message]:
        """The branch on show, first message to selected leaf."""
        with self._read() as connection:
            row = connection.execute("SELECT leaf_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None:
                raise UnknownConversationError(f"Conversation {conversation_id} does not exist.")
            leaf_id = row[0] if row[0] is not None else _default_leaf(connection, conversation_id)
            if leaf_id is None:
                return []
            rows = connection.execute(
                "WITH RECURSIVE path (id, depth) AS ("
                "  SELECT ?, 0"
                "  UNION ALL"
                "  SELECT messages.parent_id, path.depth + 1 FROM messages JOIN path ON messages.id = path.id"
                "  WHERE messages.parent_id IS NOT NULL"
                ") SELECT messages.* FROM path JOIN messages ON messages.id = path.id ORDER BY path.depth DESC",
                (leaf_id,),
            )
            return [_message(row) for row in rows]

    def select_leaf(self, conversation_id: int, message_id: int) -> None:
        """Shows the branch ending at `message_id` (the thread stops there even if it has replies)."""
        with self._write() as connection:
            self._check_member(connection, conversation_id, message_id)
            connection.execute("UPDATE conversations SET leaf_id = ? WHERE id = ?", (message_id, conversation_id))

    def select_branch(self, conversation_id: int, message_id: int) -> Message:
        """Shows the branch through `message_id` (say, a sibling the user switched to) down to its newest leaf."""
        with self._write() as connection:
            self._check_member(connection, conversation_id, message_id)
            leaf_id = _leaf_under(connection, message_id)
            connection.execute("UPDATE conversations SET leaf_id = ? WHERE id = ?", (leaf_id, conversation_id))
        return self.get_message(leaf_id)

    def _check_member(self, connection: sqlite3.Connection, conversation_id: int, message_id: int | None) -> None:
        if connection.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone() is None:
            raise UnknownConversationError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
        if message_id is not None:
            row = connection.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None or row[0] != conversation_id:
                raise UnknownConversationError(f"Message {message_id} is not part of conversation {conversation_id}.")

    # -- streaming -----------------------------------------------------------------------------------------------

    def start_reply(
        self,
        conversation_id: int,
        parent_id: int | None,
        *,
        model: str | None = None,
        model_sha256: str | None = None,
        settings: ChatSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        save_interval: float = SAVE_INTERVAL,
    ) -> ReplyWriter:
        """Adds an empty assistant message in state "streaming" and returns what fills it in."""
        message = self.add_message(
            conversation_id,
            parent_id,
            "assistant",
            "",
            state="streaming",
            model=model,
            model_sha256=model_sha256,
            settings=settings,
        )
        return ReplyWriter(self, message.id, clock=clock, save_interval=save_interval)

    def continue_reply(
        self, message_id: int, *, clock: Callable[[], float] = time.monotonic, save_interval: float = SAVE_INTERVAL
    ) -> ReplyWriter:
        """Reopens a finished or interrupted reply so that more text is added to it; saved the same way."""
        message = self.get_message(message_id)
        if message.role != "assistant":
            raise ValueError(f"message {message_id} is not a reply")
        self._save_reply(message_id, message.content, message.reasoning, "streaming", None)
        return ReplyWriter(
            self,
            message_id,
            clock=clock,
            save_interval=save_interval,
            text=message.content,
            reasoning=message.reasoning,
            tokens=self.reply_tokens(message_id),
        )

    def reply_tokens(self, message_id: int) -> ReplyTokens | None:
        """The tokens of a reply as the token view showed them while it streamed; None: it was off then."""
        with self._read() as connection:
            rows = connection.execute(
                "SELECT first, before, tokens FROM reply_tokens WHERE message_id = ? ORDER BY first", (message_id,)
            ).fetchall()
        if not rows:
            return None
        tokens: list[TokenProbability] = []
        chosen: set[int] = set()
        for row in rows:
            chunk, chunk_chosen = decode_chunk(row["tokens"], row["first"])
            tokens += chunk
            chosen |= chunk_chosen
        return ReplyTokens(rows[0]["before"] or "", tokens, frozenset(chosen))

    def _save_reply(
        self,
        message_id: int,
        content: str,
        reasoning: str | None,
        state: State,
        stats: Mapping[str, Any] | None,
        *,
        tokens: _TokenChunk | None = None,
    ) -> None:
        """The reply's text and, in the same transaction, its tokens since the last save: a kill leaves both as
        they were at one save."""
        with self._write() as connection:
            connection.execute(
                "UPDATE messages SET content = ?, reasoning = ?, state = ?, stats = ? WHERE id = ?",
                (content, reasoning, state, None if stats is None else _dumps(dict(stats)), message_id),
            )
            if tokens is not None:
                if tokens.before is not None:  # a new record: any older one no longer matches the text
                    connection.execute("DELETE FROM reply_tokens WHERE message_id = ?", (message_id,))
                connection.execute(
                    "INSERT INTO reply_tokens (message_id, first, before, tokens) VALUES (?, ?, ?, ?)",
                    (message_id, tokens.first, tokens.before, tokens.data),
                )
            if state != "streaming":
                connection.execute(
                    "UPDATE conversations SET updated_at = max(updated_at, ?) "
                    "WHERE id = (SELECT conversation_id FROM messages WHERE id = ?)",
                    (self._now_ms(), message_id),
                )

    # -- search --------------------------------------------------------------------------------------------------

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages containing every word typed (a trailing * matches word starts), best match first; the bin is
        left out. Any text is safe: it is never read as FTS5 syntax."""
        match = fts_query(query)
        if not match:
            return []
        with self._read() as connection:
            rows = connection.execute(
                "SELECT messages.id, messages.conversation_id, messages.role, conversations.title,"
                f"  snippet(messages_fts, 0, '{_MATCH_START}', '{_MATCH_END}', '…', 16) AS snippet"
                " FROM messages_fts"
                " JOIN messages ON messages.id = messages_fts.rowid"
                " JOIN conversations ON conversations.id = messages.conversation_id"
                " WHERE messages_fts MATCH ? AND conversations.deleted_at IS NULL"
                " ORDER BY rank, messages.id DESC LIMIT ?",
                (match, limit),
            ).fetchall()
        return [_hit(row) for row in rows]

    # -- backup and recovery -------------------------------------------------------------------------------------

    def backup(self, target: Path) -> None:
        """A consistent copy of every conversation at `target`, replaced atomically; safe while a reply streams.

        It reads through a connection of its own, so it can run on a worker thread without holding up writes.
        """
        source = _connect(self.path)
        try:
            with _sentences(f"Could not back up your conversations to {target}"):
                _backup_to(source, target)
        finally:
            source.close()

    def recover_from(self, damaged: Path) -> int:
        """Copies every conversation and message still readable in a damaged file (say, `quarantined`) into this
        store, row by row; returns the number of messages recovered. The damaged file is not changed."""
        if not damaged.exists():
            raise ConversationStoreError(f"There is no file at {damaged} to recover conversations from.")
        # Read a copy: opening the original would replay and then delete its -wal, changing the evidence.
        with tempfile.TemporaryDirectory(prefix="localai-recover-") as folder:
            copy = Path(folder) / "damaged.sqlite3"
            for suffix in ("", "-wal"):
                source = damaged.with_name(damaged.name + suffix)
                if source.exists():
                    shutil.copyfile(source, copy.with_name(copy.name + suffix))
            salvaged = _salvage(copy)
        with self._write() as connection:
            for conversation in salvaged:
                _insert_conversation(connection, conversation)
        recovered = sum(len(conversation.messages) for conversation in salvaged)
        log.info("conversations: recovered %d messages from %s", recovered, damaged)
        return recovered

    # -- export and import ---------------------------------------------------------------------------------------

    def export_markdown(self, conversation_id: int) -> str:
        """The branch on show as Markdown; message text is kept as written (it usually is Markdown)."""
        conversation = self.get(conversation_id)
        lines = [f"# {_one_line(conversation.title) or 'Untitled conversation'}", "", _byline(conversation), ""]
        if conversation.settings.system_prompt:
            lines += ["## System prompt", "", conversation.settings.system_prompt.rstrip(), ""]
        for heading, message in self._headed_messages(conversation):
            lines += [f"## {heading}", ""]
            if message.reasoning:
                lines += ["<details><summary>Reasoning</summary>", "", message.reasoning.rstrip(), "", "</details>", ""]
            lines += [message.content.rstrip(), ""]
            if message.state == "interrupted":
                lines += ["*(this reply was interrupted)*", ""]
        return "\n".join(lines)

    def export_html(self, conversation_id: int) -> str:
        """The branch on show as one self-contained HTML page: every text escaped, nothing loaded from anywhere."""
        conversation = self.get(conversation_id)
        title = html.escape(_one_line(conversation.title) or "Untitled conversation")
        articles: list[str] = []
        if conversation.settings.system_prompt:
            articles.append(
                '<article class="message system"><h2>System prompt</h2>'
                f'<div class="text">{html.escape(conversation.settings.system_prompt)}</div></article>'
            )
        for heading, message in self._headed_messages(conversation):
            parts = [f'<article class="message {message.role}">', f"<h2>{html.escape(heading)}</h2>"]
            if message.reasoning:
                parts.append(
                    '<details class="reasoning"><summary>Reasoning</summary>'
                    f'<div class="text">{html.escape(message.reasoning)}</div></details>'
                )
            parts.append(f'<div class="text">{html.escape(message.content)}</div>')
            if message.state == "interrupted":
                parts.append('<p class="note">This reply was interrupted.</p>')
            parts.append("</article>")
            articles.append("\n".join(parts))
        return _HTML_PAGE.format(title=title, byline=html.escape(_byline(conversation)), messages="\n".join(articles))

    def _headed_messages(self, conversation: Conversation) -> list[tuple[str, Message]]:
        """What Markdown and HTML exports show, each message with its heading: the branch on show, or for a side-by-side
        conversation both sides' branches, each reply headed by its model and settings."""
        messages = self.thread(conversation.id)
        labels: dict[int, str] = {}
        if conversation.settings.layout == SIDE_BY_SIDE:
            from localai_app.core.side_by_side import branches, merged, settings_label  # it builds on this module

            messages = merged(branches(self, conversation.id))
            labels = {m.id: f" ({settings_label(m.settings)})" for m in messages if m.settings and m.role != "user"}
        return [
            (_role_label(m.role) + (f" · {m.model}" if m.model else "") + labels.get(m.id, ""), m) for m in messages
        ]

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """One conversation, every branch, in the format of docs/conversation-format.md."""
        self.get(conversation_id)
        with self._read() as connection:
            return self._envelope([_conversation_document(connection, conversation_id)])

    def export_all_json(self) -> dict[str, Any]:
        """Every conversation not in the bin, oldest first."""
        with self._read() as connection:
            ids = [
                row[0]
                for row in connection.execute("SELECT id FROM conversations WHERE deleted_at IS NULL ORDER BY id")
            ]
            return self._envelope([_conversation_document(connection, conversation_id) for conversation_id in ids])

    def _envelope(self, conversations: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": EXPORT_FORMAT,
            "schema_version": EXPORT_VERSION,
            "exported_at": _iso(self._now_ms()),
            "generator": f"localai-app {__version__}",
            "conversations": conversations,
        }

    def import_json(self, data: object) -> list[int]:
        """Adds the conversations of an export (all of them or, on any error, none); returns their new ids."""
        conversations = _parse_export(data, self._now_ms())
        with self._write() as connection:
            return [_insert_conversation(connection, conversation) for conversation in conversations]

    def import_openai_messages(self, messages: object, title: str = "") -> int:
        """Adds a conversation from OpenAI-style `[{"role", "content"}]` (or `{"messages": [...]}`); returns its id."""
        conversation = _parse_openai(messages, title.strip(), self._now_ms())
        with self._write() as connection:
            return _insert_conversation(connection, conversation)


class ReplyWriter:
    """Saves a reply while it streams: the first text at once, then at most once per `save_interval`.

    Each save is one short transaction, so a kill at any moment loses at most the text of the last interval. When
    the stream may pause for long, call `flush()` from a timer so a pause does not hold text back. As a context
    manager, a reply not finished by the end of the block is marked interrupted.
    """

    def __init__(
        self,
        store: ConversationStore,
        message_id: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        save_interval: float = SAVE_INTERVAL,
        text: str = "",
        reasoning: str | None = None,
        tokens: ReplyTokens | None = None,
    ) -> None:
        self.message_id = message_id
        self._store = store
        self._clock = clock
        self._save_interval = save_interval
        self._text: list[str] = [text] if text else []  # a continued reply starts from what it had
        self._reasoning: list[str] = [reasoning] if reasoning else []
        self._saved_at: float | None = None
        self._unsaved = False
        self._state: State = "streaming"
        # The tokens recorded (token view on) go on from the stored ones where those cover the text so far; else a
        # new record starts, with the text so far as its `before` (None: the stored record is being added to).
        continues = tokens is not None and tokens.text == text
        self._before: str | None = None if continues else text
        self._tokens_saved = len(tokens.tokens) if tokens is not None and continues else 0
        self._chosen = tokens.chosen if tokens is not None and continues else frozenset()
        self._unsaved_tokens: list[TokenProbability] = []

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def reasoning(self) -> str | None:
        return "".join(self._reasoning) if self._reasoning else None

    @property
    def state(self) -> State:
        return self._state

    def append(self, text: str) -> None:
        self._add(self._text, text)

    def append_reasoning(self, text: str) -> None:
        self._add(self._reasoning, text)

    def append_tokens(self, tokens: list[TokenProbability]) -> None:
        """The probabilities of the text just appended (only while the token view is on), saved with it."""
        self._check_streaming()
        self._unsaved_tokens += tokens
        self._changed()

    def start_tokens(self, tokens: ReplyTokens) -> None:
        """The record this reply's tokens go on from (a what-if branch: the original's tokens up to the one the
        user chose, marked); `tokens.text` is the reply's text so far. Saved at once."""
        self._check_streaming()
        self._before, self._chosen = tokens.before, tokens.chosen
        self._tokens_saved, self._unsaved_tokens = 0, list(tokens.tokens)
        self._save("streaming", None)

    def flush(self) -> None:
        """Saves now whatever has not been saved yet."""
        if self._unsaved:
            self._save("streaming", None)

    def finish(self, stats: Mapping[str, Any] | None = None) -> Message:
        self._save("complete", stats)
        return self._store.get_message(self.message_id)

    def interrupt(self, stats: Mapping[str, Any] | None = None) -> Message:
        """Keeps the text so far, marked interrupted; `stats` may say why ({"note": "…"})."""
        self._save("interrupted", stats)
        return self._store.get_message(self.message_id)

    def __enter__(self) -> ReplyWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._state == "streaming":
            self.interrupt()

    def _add(self, parts: list[str], text: str) -> None:
        self._check_streaming()
        if text:
            parts.append(text)
            self._changed()

    def _check_streaming(self) -> None:
        if self._state != "streaming":
            raise RuntimeError(f"reply {self.message_id} is already {self._state}")

    def _changed(self) -> None:
        """Saves now if the interval since the last save has passed (the first change at once)."""
        self._unsaved = True
        if self._saved_at is None or self._clock() - self._saved_at >= self._save_interval:
            self._save("streaming", None)

    def _save(self, state: State, stats: Mapping[str, Any] | None) -> None:
        self._check_streaming()
        tokens = None
        if self._unsaved_tokens:
            data = encode_chunk(self._unsaved_tokens, self._chosen, self._tokens_saved)
            tokens = _TokenChunk(self._tokens_saved, self._before, data)
        self._store._save_reply(self.message_id, self.text, self.reasoning, state, stats, tokens=tokens)
        self._saved_at = self._clock()
        self._unsaved = False
        self._state = state
        if tokens is not None:
            self._tokens_saved += len(self._unsaved_tokens)
            self._unsaved_tokens, self._before = [], None


@dataclass(frozen=True)
class _TokenChunk:
    """Tokens of a reply to add to the store, from position `first`; `before` starts a new record."""

    first: int
    before: str | None
    data: bytes


# -- search queries ----------------------------------------------------------------------------------------------

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def fts_query(text: str) -> str:
    """User text as an FTS5 query that cannot be a syntax error: each word a quoted string, all of them required.

    Quotes, brackets, AND/OR/NOT/NEAR and column filters lose their meaning; a * ending a word keeps its meaning
    of "starts with". Words of punctuation only (which FTS5 would not index anyway) are dropped; "" means no search.
    """
    terms: list[str] = []
    for typed in _CONTROL_CHARACTERS.sub(" ", text).split():  # FTS5 takes a NUL for the end of the query
        word = typed.rstrip("*")
        if any(character.isalnum() for character in word):
            terms.append('"' + word.replace('"', '""') + '"' + ("*" if typed.endswith("*") else ""))
    return " ".join(terms)


def _hit(row: sqlite3.Row) -> SearchHit:
    text: str = row["snippet"] or ""
    plain: list[str] = []
    matches: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    for piece in re.split(f"([{_MATCH_START}{_MATCH_END}])", text):
        if piece == _MATCH_START:
            start = length
        elif piece == _MATCH_END:
            if start is not None:
                matches.append((start, length))
            start = None
        else:
            plain.append(piece)
            length += len(piece)
    return SearchHit(row["conversation_id"], row["title"], row["id"], row["role"], "".join(plain), tuple(matches))


# -- rows --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NewMessage:
    """A message to insert, from an import or a salvage; `key` and `parent` are ids local to its source."""

    key: int
    parent: int | None
    role: Role
    content: str
    reasoning: str | None
    state: State
    created_at: int  # milliseconds
    model: str | None = None
    model_sha256: str | None = None
    settings: ChatSettings | None = None
    stats: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class _NewConversation:
    title: str
    created_at: int
    updated_at: int
    pinned: bool = False
    settings: ChatSettings = field(default_factory=ChatSettings)
    messages: list[_NewMessage] = field(default_factory=list)  # each parent before its children
    selected_leaf: int | None = None  # a key; None: the newest branch


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        title=row["title"],
        created_at=row["created_at"] / 1000,
        updated_at=row["updated_at"] / 1000,
        pinned=bool(row["pinned"]),
        deleted_at=None if row["deleted_at"] is None else row["deleted_at"] / 1000,
        settings=ChatSettings.from_dict(_loads(row["settings"])),
        leaf_id=row["leaf_id"],
    )


def _message(row: sqlite3.Row) -> Message:
    settings = _loads(row["settings"])
    stats = _loads(row["stats"])
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        parent_id=row["parent_id"],
        role=row["role"],
        content=row["content"],
        reasoning=row["reasoning"],
        state=row["state"],
        created_at=row["created_at"] / 1000,
        model=row["model"],
        model_sha256=row["model_sha256"],
        settings=None if settings is None else ChatSettings.from_dict(settings),
        stats=stats if isinstance(stats, dict) else None,
    )


def _insert_message(
    connection: sqlite3.Connection, conversation_id: int, parent_id: int | None, message: _NewMessage
) -> int:
    cursor = connection.execute(
        "INSERT INTO messages (conversation_id, parent_id, role, content, reasoning, state, created_at, model,"
        " model_sha256, settings, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            conversation_id,
            parent_id,
            message.role,
            message.content,
            message.reasoning,
            message.state,
            message.created_at,
            message.model,
            message.model_sha256,
            None if message.settings is None else _dumps(message.settings.as_dict()),
            None if message.stats is None else _dumps(dict(message.stats)),
        ),
    )
    return _row_id(cursor)


def _insert_conversation(connection: sqlite3.Connection, conversation: _NewConversation) -> int:
    cursor = connection.execute(
        "INSERT INTO conversations (title, created_at, updated_at, pinned, settings) VALUES (?, ?, ?, ?, ?)",
        (
            conversation.title,
            conversation.created_at,
            conversation.updated_at,
            int(conversation.pinned),
            _dumps(conversation.settings.as_dict()),
        ),
    )
    conversation_id = _row_id(cursor)
    ids: dict[int, int] = {}
    for message in conversation.messages:
        parent = None if message.parent is None else ids[message.parent]
        ids[message.key] = _insert_message(connection, conversation_id, parent, message)
    leaf = ids.get(conversation.selected_leaf) if conversation.selected_leaf is not None else None
    if leaf is None:
        leaf = _default_leaf(connection, conversation_id)
    connection.execute("UPDATE conversations SET leaf_id = ? WHERE id = ?", (leaf, conversation_id))
    return conversation_id


def _leaf_under(connection: sqlite3.Connection, message_id: int) -> int:
    # "Most recent" is the highest id: insertion order, which a clock set back cannot reorder.
    row = connection.execute(
        "WITH RECURSIVE down (id, depth) AS ("
        "  SELECT ?, 0"
        "  UNION ALL"
        "  SELECT (SELECT max(id) FROM messages WHERE parent_id = down.id), depth + 1 FROM down"
        "  WHERE EXISTS (SELECT 1 FROM messages WHERE parent_id = down.id)"
        ") SELECT id FROM down ORDER BY depth DESC LIMIT 1",
        (message_id,),
    ).fetchone()
    leaf: int = row[0]
    return leaf


def _default_leaf(connection: sqlite3.Connection, conversation_id: int) -> int | None:
    """The newest branch: from the newest first message, the newest child at each step."""
    row = connection.execute(
        "SELECT max(id) FROM messages WHERE conversation_id = ? AND parent_id IS NULL", (conversation_id,)
    ).fetchone()
    return None if row[0] is None else _leaf_under(connection, row[0])


def _conversation_document(connection: sqlite3.Connection, conversation_id: int) -> dict[str, Any]:
    row = connection.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    messages = [
        _message(message)
        for message in connection.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (row["id"],))
    ]
    # Ids in the file count from 1 in each conversation, so an export does not depend on what else the store holds.
    keys = {message.id: index for index, message in enumerate(messages, start=1)}
    return {
        "title": row["title"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "pinned": bool(row["pinned"]),
        "settings": ChatSettings.from_dict(_loads(row["settings"])).as_dict(),
        "selected_leaf": keys.get(row["leaf_id"]),
        "messages": [
            {
                "id": keys[message.id],
                "parent": None if message.parent_id is None else keys[message.parent_id],
                "role": message.role,
                "content": message.content,
                "reasoning": message.reasoning,
                "state": message.state,
                "created_at": _iso(round(message.created_at * 1000)),
                "model": message.model,
                "model_sha256": message.model_sha256,
                "settings": None if message.settings is None else message.settings.as_dict(),
                "stats": message.stats,
            }
            for message in messages
        ],
    }


# -- import parsing ----------------------------------------------------------------------------------------------


class _Fields:
    """Typed reads from one untrusted JSON object; every problem becomes an ImportFormatError naming the place."""

    def __init__(self, raw: object, where: str) -> None:
        if not isinstance(raw, dict):
            raise ImportFormatError(f"{where} is not a JSON object.")
        self.raw: dict[str, object] = raw
        self.where = where

    def fail(self, key: str, expected: str) -> ImportFormatError:
        return ImportFormatError(f'{self.where}: "{key}" must be {expected}, not {_describe(self.raw.get(key))}.')

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw.get(key, default)
        if not isinstance(value, str):
            raise self.fail(key, "text")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, "text or null")
        return value

    def optional_id(self, key: str) -> int | None:
        value = self.raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.fail(key, "a whole number or null")
        return value

    def flag(self, key: str) -> bool:
        value = self.raw.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false")
        return value

    def time(self, key: str, default: int) -> int:
        value = self.raw.get(key)
        if value is None:
            return default
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)  # no offset given: read as UTC, the export's own zone
                return (moment - _EPOCH) // timedelta(milliseconds=1)
        raise self.fail(key, 'an ISO 8601 time such as "2025-01-31T12:00:00.000Z"')

    def settings(self, key: str, *, optional: bool) -> ChatSettings | None:
        value = self.raw.get(key)
        if value is None and optional:
            return None
        if value is None:
            return ChatSettings()
        if not isinstance(value, dict):
            raise self.fail(key, "a JSON object")
        values, problems = _setting_values(value)
        if problems:
            raise ImportFormatError(f"{self.where}: {problems[0]}.")
        return replace(ChatSettings(), **values)

    def optional_object(self, key: str) -> dict[str, Any] | None:
        value = self.raw.get(key)
        if value is not None and not isinstance(value, dict):
            raise self.fail(key, "a JSON object or null")
        return value


def _parse_export(data: object, now: int) -> list[_NewConversation]:
    if isinstance(data, list):
        raise ImportFormatError(
            "This is a list, not a localai-app conversation export; import it as OpenAI-style messages instead."
        )
    document = _Fields(data, "The file")
    if document.raw.get("format") != EXPORT_FORMAT:
        raise ImportFormatError(f'This is not a localai-app conversation export (its "format" is not {EXPORT_FORMAT}).')
    version = document.raw.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise document.fail("schema_version", "a whole number from 1")
    if version > EXPORT_VERSION:
        raise ImportFormatError(
            f"This export was written by a newer version of localai-app (format {version}): "
            "update the app to import it."
        )
    conversations = document.raw.get("conversations")
    if not isinstance(conversations, list):
        raise document.fail("conversations", "a list")
    return [
        _parse_conversation(raw, f"Conversation {number}", now) for number, raw in enumerate(conversations, start=1)
    ]


def _parse_conversation(raw: object, where: str, now: int) -> _NewConversation:
    fields_ = _Fields(raw, where)
    created_at = fields_.time("created_at", default=now)
    messages_raw = fields_.raw.get("messages", [])
    if not isinstance(messages_raw, list):
        raise fields_.fail("messages", "a list")
    messages: list[_NewMessage] = []
    keys: set[int] = set()
    for number, raw_message in enumerate(messages_raw, start=1):
        message = _Fields(raw_message, f"{where}, message {number}")
        key = message.optional_id("id")
        if key is None or key in keys:
            raise message.fail("id", "a whole number not used by another message")
        parent = message.optional_id("parent")
        if parent is not None and parent not in keys:
            raise message.fail("parent", "null or the id of a message listed before it")
        role = message.text("role")
        if role not in ROLES:
            raise message.fail("role", "one of " + ", ".join(ROLES))
        state = message.text("state", "complete")
        if state not in STATES:
            raise message.fail("state", "one of " + ", ".join(STATES))
        keys.add(key)
        messages.append(
            _NewMessage(
                key=key,
                parent=parent,
                role=role,
                content=message.text("content"),
                reasoning=message.optional_text("reasoning"),
                # Nothing streams into an imported file.
                state="interrupted" if state == "streaming" else cast(State, state),
                created_at=message.time("created_at", default=created_at),
                model=message.optional_text("model"),
                model_sha256=message.optional_text("model_sha256"),
                settings=message.settings("settings", optional=True),
                stats=message.optional_object("stats"),
            )
        )
    selected = fields_.optional_id("selected_leaf")
    if selected is not None and selected not in keys:
        raise fields_.fail("selected_leaf", "null or the id of one of its messages")
    return _NewConversation(
        title=fields_.text("title", ""),
        created_at=created_at,
        updated_at=fields_.time("updated_at", default=created_at),
        pinned=fields_.flag("pinned"),
        settings=fields_.settings("settings", optional=False) or ChatSettings(),
        messages=messages,
        selected_leaf=selected,
    )


_OPENAI_ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _parse_openai(data: object, title: str, now: int) -> _NewConversation:
    if isinstance(data, dict) and "messages" in data:  # a whole request body
        data = data["messages"]
    if not isinstance(data, list):
        raise ImportFormatError(f'Expected a list of {{"role", "content"}} messages, not {_describe(data)}.')
    if not data:
        raise ImportFormatError("There are no messages to import.")
    messages: list[_NewMessage] = []
    for number, raw in enumerate(data, start=1):
        message = _Fields(raw, f"Message {number}")
        role = message.text("role")
        if role not in _OPENAI_ROLES:
            raise ImportFormatError(f"Message {number} has the role {role!r}, which this app cannot show.")
        messages.append(
            _NewMessage(
                key=number,
                parent=number - 1 if number > 1 else None,
                role=_OPENAI_ROLES[role],
                content=_openai_content(message),
                reasoning=message.optional_text("reasoning_content") or message.optional_text("reasoning"),
                state="complete",
                created_at=now,
            )
        )
    first_question = next((message.content for message in messages if message.role == "user"), "")
    return _NewConversation(
        title=title or title_from(first_question) or "Imported conversation",
        created_at=now,
        updated_at=now,
        messages=messages,
    )


def _openai_content(message: _Fields) -> str:
    content = message.raw.get("content")
    if content is None:  # an assistant turn that only called tools
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise message.fail("content", "text or a list of parts")
    texts: list[str] = []
    for number, raw_part in enumerate(content, start=1):
        part = _Fields(raw_part, f"{message.where}, part {number}")
        kind = part.text("type")
        # Images and audio cannot be shown here; say where they were rather than drop them silently.
        texts.append(part.text("text") if kind == "text" else f"[{kind} omitted]")
    return "\n\n".join(texts)


def title_from(text: str, length: int = 60) -> str:
    line = _one_line(text)
    return line if len(line) <= length else line[: length - 1].rstrip() + "…"


# -- salvage -----------------------------------------------------------------------------------------------------


def _salvage(path: Path) -> list[_NewConversation]:
    """Whatever conversations and messages a damaged file still yields, each row read on its own."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.row_factory = sqlite3.Row
    try:
        # A damaged page of the schema or of sqlite_stat1 otherwise fails every query; this reads past it. The
        # file is a throwaway copy, so nothing can be written to the original.
        connection.execute("PRAGMA writable_schema = ON")
        conversations = {
            key: row
            for key in _readable_ids(connection, "conversations")
            if (row := _read_row(connection, "conversations", key))
        }
        by_conversation: dict[int, list[dict[str, Any]]] = {}
        for key in _readable_ids(connection, "messages"):
            row = _read_row(connection, "messages", key)
            if row is not None and isinstance(row.get("conversation_id"), int):
                by_conversation.setdefault(row["conversation_id"], []).append(row)
    finally:
        connection.close()
    salvaged: list[_NewConversation] = []
    for conversation_id in sorted(conversations.keys() | by_conversation.keys()):
        row = conversations.get(conversation_id, {})
        messages = _salvaged_messages(by_conversation.get(conversation_id, []))
        created_at = _int_or(row.get("created_at"), min((message.created_at for message in messages), default=0))
        leaf = row.get("leaf_id")
        salvaged.append(
            _NewConversation(
                title=row["title"] if isinstance(row.get("title"), str) else "Recovered conversation",
                created_at=created_at,
                updated_at=_int_or(row.get("updated_at"), created_at),
                pinned=bool(row.get("pinned")),
                settings=ChatSettings.from_dict(_loads(row.get("settings"))),
                messages=messages,
                selected_leaf=leaf if any(message.key == leaf for message in messages) else None,
            )
        )
    return salvaged


def _salvaged_messages(rows: list[dict[str, Any]]) -> list[_NewMessage]:
    messages: list[_NewMessage] = []
    kept: set[int] = set()
    for row in sorted(rows, key=lambda row: int(row["id"])):
        if row.get("role") not in ROLES or not isinstance(row.get("content"), str):
            continue
        parent = row.get("parent_id")
        if parent is not None and parent not in kept:
            # Its parent was lost: hang it under the message before it, which keeps a readable thread.
            parent = messages[-1].key if messages else None
        state = row.get("state")
        settings = _loads(row.get("settings"))
        stats = _loads(row.get("stats"))
        messages.append(
            _NewMessage(
                key=row["id"],
                parent=parent,
                role=row["role"],
                content=row["content"],
                reasoning=row.get("reasoning") if isinstance(row.get("reasoning"), str) else None,
                state=state if state in ("complete", "interrupted") else "interrupted",
                created_at=_int_or(row.get("created_at"), 0),
                model=row.get("model") if isinstance(row.get("model"), str) else None,
                model_sha256=row.get("model_sha256") if isinstance(row.get("model_sha256"), str) else None,
                settings=None if settings is None else ChatSettings.from_dict(settings),
                stats=stats if isinstance(stats, dict) else None,
            )
        )
        kept.add(row["id"])
    return messages


def _readable_ids(connection: sqlite3.Connection, table: str) -> set[int]:
    """The row ids of `table` a scan can reach: upwards from the first row, then downwards from the last, each
    time jumping past a damaged page with ever longer jumps (1, 2, 4... ids)."""
    found: set[int] = set()
    for step, start in ((1, 0), (-1, _LARGEST_ID)):
        bound, jump = start, 1
        query = (
            f"SELECT id FROM {table} NOT INDEXED WHERE id > ? ORDER BY id"
            if step > 0
            else f"SELECT id FROM {table} NOT INDEXED WHERE id < ? ORDER BY id DESC"
        )
        while -_LARGEST_ID <= bound <= _LARGEST_ID:
            try:
                for (row_id,) in connection.execute(query, (bound,)):
                    found.add(row_id)
                    bound, jump = row_id, 1
                break
            except sqlite3.DatabaseError:
                bound += step * jump
                jump *= 2
    return found


def _read_row(connection: sqlite3.Connection, table: str, row_id: int) -> dict[str, Any] | None:
    try:
        row = connection.execute(f"SELECT * FROM {table} NOT INDEXED WHERE id = ?", (row_id,)).fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else dict(zip(row.keys(), tuple(row), strict=True))


def _int_or(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# -- helpers -----------------------------------------------------------------------------------------------------


class _DamagedError(Exception):
    """The file at the store's path is not a sound SQLite database."""


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are the explicit BEGIN IMMEDIATE ... COMMIT in _write, never implicit.
    # check_same_thread=False: the store's lock serialises use of the one connection.
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    return connection


def _apply(connection: sqlite3.Connection, version: int, migration: Migration) -> None:
    """Runs one migration and records its version in one transaction: it happens entirely or not at all."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Another window of the app may have migrated while this one waited for the lock.
        if connection.execute("PRAGMA user_version").fetchone()[0] == version:
            log.info("conversations: migrating to version %d", version + 1)
            if isinstance(migration, str):
                for statement in _statements(migration):
                    connection.execute(statement)
            else:
                migration(connection)
            connection.execute(f"PRAGMA user_version = {version + 1}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script one by one (executescript would commit the migration's transaction)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):  # false for a ; inside a string or a trigger's body
            if pending.strip(" \n;"):
                yield pending
            pending = ""


def _backup_to(source: sqlite3.Connection, target: Path) -> None:
    """Copies a live database with SQLite's backup API (one step: one consistent snapshot) and renames into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(descriptor)
    try:
        destination = sqlite3.connect(temporary)
        try:
            source.backup(destination)
        finally:
            destination.close()
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _is_damage(error: sqlite3.DatabaseError) -> bool:
    # Not every DatabaseError is damage: "database is locked" is one too, and must never move a file aside.
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _store_error(error: sqlite3.Error, doing: str) -> ConversationStoreError:
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    why = {
        _SQLITE_FULL: "the disk is full",
        _SQLITE_BUSY: "another program is using the file",
        _SQLITE_LOCKED: "another program is using the file",
        _SQLITE_READONLY: "the file is read-only",
        _SQLITE_IOERR: "the disk reported an error",
        _SQLITE_CORRUPT: "the file is damaged (restart the app to repair it)",
        _SQLITE_NOTADB: "the file is not a conversation database",
    }.get(code, str(error))
    return ConversationStoreError(f"{doing}: {why}.")


@contextmanager
def _sentences(doing: str) -> Iterator[None]:
    """SQLite's operational failures as one sentence for the user; a bug (a constraint, bad SQL) stays a bug."""
    try:
        yield
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
        raise
    except sqlite3.DatabaseError as error:
        raise _store_error(error, doing) from error


def _unused_path(path: Path) -> Path:
    """`path`, or `path` with -2, -3... before its suffix: the first name free together with its -wal and -shm."""
    candidate = path
    number = 1
    while any(candidate.with_name(candidate.name + suffix).exists() for suffix in ("", "-wal", "-shm")):
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def _found(cursor: sqlite3.Cursor, conversation_id: int) -> None:
    if cursor.rowcount == 0:
        raise UnknownConversationError(f"Conversation {conversation_id} does not exist (it may have been deleted).")


def _row_id(cursor: sqlite3.Cursor) -> int:
    row_id = cursor.lastrowid
    assert row_id is not None  # set by every INSERT
    return row_id


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _loads(text: object) -> object:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        log.warning("conversations: ignoring stored JSON that does not parse: %.80r", text)
        return None


_SETTING_HINTS = get_type_hints(ChatSettings)
# Each setting's allowed types: (float,) or (int, NoneType)...
_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    item.name: get_args(_SETTING_HINTS[item.name]) or (_SETTING_HINTS[item.name],) for item in fields(ChatSettings)
}


def _setting_values(raw: object) -> tuple[dict[str, Any], list[str]]:
    """The known settings in `raw` that have the right type, and a description of each that has not."""
    if not isinstance(raw, Mapping):
        return {}, [] if raw is None else [f"settings must be a JSON object, not {_describe(raw)}"]
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        allowed = _SETTING_TYPES.get(key)
        if allowed is None:
            continue  # a setting of a newer version, or a typo: not ours to keep
        if isinstance(value, bool) or not (isinstance(value, allowed) or (float in allowed and isinstance(value, int))):
            expected = " or ".join("null" if kind is type(None) else _TYPE_NAMES[kind] for kind in allowed)
            problems.append(f'setting "{key}" must be {expected}, not {_describe(value)}')
            continue
        values[key] = float(value) if float in allowed and isinstance(value, int) else value
    return values, problems


_TYPE_NAMES: dict[type, str] = {str: "text", float: "a number", int: "a whole number"}


def _describe(value: object) -> str:
    """A JSON value as an error message names it: the value itself when short, else its kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and len(value) <= 40 and value.isprintable():
        return json.dumps(value, ensure_ascii=False)
    names = {str: "text", int: "a number", float: "a number", list: "a list", dict: "a JSON object"}
    return names.get(type(value), type(value).__name__)


def _iso(milliseconds: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=milliseconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _role_label(role: Role) -> str:
    return {"system": "System", "user": "You", "assistant": "Assistant"}[role]


def _byline(conversation: Conversation) -> str:
    created = datetime.fromtimestamp(conversation.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    model = f" · {conversation.settings.model}" if conversation.settings.model else ""
    return f"Started {created}{model} · exported from localai-app {__version__}"


_HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f6f6f4; color: #1d1d1b; }}
main {{ max-width: 46rem; margin: 0 auto; padding: 2rem 1rem; }}
h1 {{ font-size: 1.5rem; margin-bottom: 0.25rem; }}
.byline, .note {{ color: #6b6b66; font-size: 0.875rem; }}
.message {{ background: #fff; border-radius: 0.5rem; padding: 0.75rem 1rem; margin: 1rem 0; }}
.message.user {{ background: #e8eef8; }}
.message.system {{ background: #f0ede4; }}
.message h2 {{ font-size: 0.875rem; margin: 0 0 0.5rem; color: #4a4a45; }}
.text {{ white-space: pre-wrap; overflow-wrap: anywhere; }}
.reasoning {{ color: #5a5a55; margin-bottom: 0.5rem; }}
@media (prefers-color-scheme: dark) {{
  body {{ background: #1b1b1a; color: #e8e8e4; }}
  .message {{ background: #262624; }}
  .message.user {{ background: #23303f; }}
  .message.system {{ background: #302d25; }}
  .message h2, .reasoning, .byline, .note {{ color: #a8a8a2; }}
}}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p class="byline">{byline}</p>
{messages}
</main>
</body>
</html>
"""
