"""The conversation being chatted in, for the window and `localai-app chat --save`: what the next reply answers
(the branch on show, read back from the store), and the reply saved while it streams."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localai_app.core.conversations import (
    STORE_FILE,
    ChatSettings,
    ConversationStore,
    Message,
    ReplyWriter,
    title_from,
)
from localai_app.core.errors import ConversationStoreError
from localai_app.core.library import ModelInfo

Prompt = str | list[dict[str, str]]


class ChatSession:
    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        self.conversation_id: int | None = None  # None: the next message starts a new conversation
        self.reply: ReplyWriter | None = None  # the reply being written, saved as it streams

    def open(self, conversation_id: int) -> list[Message]:
        """Makes a stored conversation the current one; returns its branch on show, first message first."""
        self.store.get(conversation_id)  # a clear error for one that does not exist
        self.conversation_id = conversation_id
        return self.store.thread(conversation_id)

    def start_new(self) -> None:
        self.conversation_id = None

    def ask(self, text: str, model: ModelInfo, settings: ChatSettings) -> Prompt:
        """Saves the user's message and an empty reply under it, and returns the prompt for the engine: the whole
        branch as chat messages, or for a model without a chat template the text alone (it only continues text)."""
        if self.conversation_id is None:
            self.conversation_id = self.store.create_conversation(title_from(text), settings).id
        else:
            self.store.update_settings(self.conversation_id, settings)
        leaf = self.store.get(self.conversation_id).leaf_id
        question = self.store.add_message(self.conversation_id, leaf, "user", text)
        self.reply = self.store.start_reply(
            self.conversation_id, question.id, model=model.name, model_sha256=model.sha256, settings=settings
        )
        if not model.has_chat_template:
            return text
        system = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
        earlier = [message for message in self.store.thread(self.conversation_id) if message.content]
        return system + [{"role": message.role, "content": message.content} for message in earlier]

    def append(self, text: str) -> None:
        if self.reply is not None:
            self.reply.append(text)

    def flush(self) -> None:
        """Saves what streamed since the last save: a timer calls it, so a slow stream is not held back."""
        if self.reply is not None and self.reply.state == "streaming":
            self.reply.flush()

    def finish(self, stats: Mapping[str, Any]) -> None:
        """The reply ended normally, or the user stopped it (stats say which): it is kept as complete."""
        if self.reply is not None:
            self.reply.finish(stats)
            self.reply = None

    def interrupt(self) -> None:
        """The engine failed or the window is closing mid-reply: the text so far is kept, marked interrupted."""
        if self.reply is not None and self.reply.state == "streaming":
            self.reply.interrupt()
        self.reply = None


def open_store(data_dir: Path) -> tuple[ConversationStore, str | None]:
    """The user's conversations and, when something is wrong with their file, what to tell the user. A file that
    cannot be used (one from a newer version, say) is left alone and this session's chats go to a scratch file."""
    try:
        store = ConversationStore(data_dir / STORE_FILE)
    except ConversationStoreError as error:
        scratch = Path(tempfile.mkdtemp(prefix="localai-app-conversations-"))
        return ConversationStore(scratch / STORE_FILE), f"{error} Conversations will not be kept after this session."
    if store.quarantined is not None:
        return store, (
            f"The conversations file was damaged, so it was moved aside to {store.quarantined} and a new one "
            "started. Nothing was deleted; Recover copies back what can still be read."
        )
    return store, None
