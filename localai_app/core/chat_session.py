"""The conversation being chatted in, for the window and `localai-app chat --save`: what the next reply answers
(the branch on show, read back from the store), and the reply saved while it streams."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localai_app.core.context import Prompt
from localai_app.core.conversations import (
    STORE_FILE,
    ChatSettings,
    ConversationStore,
    Message,
    ReplyWriter,
    title_from,
)
from localai_app.core.errors import AppError, ConversationStoreError
from localai_app.core.library import ModelInfo
from localai_app.core.replies import TokenProbability
from localai_app.core.reply_tokens import ReplyTokens


class ChatSession:
    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        self.conversation_id: int | None = None  # None: the next message starts a new conversation
        self.reply: ReplyWriter | None = None  # the reply being written, saved as it streams

    def open(self, conversation_id: int) -> None:
        """Makes a stored conversation the current one: the next message continues it."""
        self.store.get(conversation_id)  # a clear error for one that does not exist
        self.conversation_id = conversation_id

    def start_new(self) -> None:
        self.conversation_id = None

    def ask(self, text: str, model: ModelInfo, settings: ChatSettings) -> Prompt:
        """Saves the user's message and an empty reply under it, and returns the prompt for the engine: the whole
        branch as chat messages, or for a model without a chat template the text alone (it only continues text)."""
        if self.conversation_id is None:
            self.conversation_id = self.store.create_conversation(title_from(text), settings).id
        leaf = self.store.get(self.conversation_id).leaf_id
        return self.answer(self.store.add_message(self.conversation_id, leaf, "user", text), model, settings)

    def preview(self, text: str, model: ModelInfo, settings: ChatSettings, *, afresh: bool = False) -> Prompt | None:
        """The prompt `ask(text, ...)` would return, saving nothing (the prompt inspector's view); with no `text`,
        the prompt of the conversation as it stands (for a base model, its latest text), or with `afresh` that of
        another answer to its last question, as Regenerate sends it (step mode's). None: nothing to send."""
        thread = self.store.thread(self.conversation_id) if self.conversation_id is not None else []
        if afresh and not text:
            thread = thread[: self._last_question(thread) + 1]
        if not model.has_chat_template:
            written = [message.content for message in thread if message.role == "user"]
            return text or (written[-1] if written else None)
        messages = self._messages(thread, settings) + ([{"role": "user", "content": text}] if text else [])
        return messages if any(message["role"] != "system" for message in messages) else None

    def edit(self, message_id: int, text: str, model: ModelInfo, settings: ChatSettings) -> Prompt:
        """A new version of one of the user's messages, answered afresh; the old version and what followed it stay
        as a branch to flip back to."""
        original = self._member(message_id)
        if original.role != "user":
            raise AppError("Only your own messages can be edited; regenerate a reply instead.")
        return self.answer(
            self.store.add_message(original.conversation_id, original.parent_id, "user", text), model, settings
        )

    def regenerate(self, message_id: int, model: ModelInfo, settings: ChatSettings) -> Prompt:
        """Another reply to the question a reply answered; the earlier reply stays as a branch."""
        reply = self._member(message_id)
        if reply.role != "assistant" or reply.parent_id is None:
            raise AppError("Only a reply can be regenerated.")
        return self.answer(self.store.get_message(reply.parent_id), model, settings)

    def continue_reply(self, message_id: int, model: ModelInfo, settings: ChatSettings) -> Prompt:
        """More of the last reply, added to it: the prompt ends inside that reply (for a model without a chat
        template, the question and the reply so far are one text to go on with)."""
        reply = self._member(message_id)
        thread = self.store.thread(reply.conversation_id)
        if reply.role != "assistant" or thread[-1].id != reply.id or reply.parent_id is None:
            raise AppError("Only the last reply of the conversation can be continued.")
        return self._go_on_with(reply, model, settings)

    def branch_reply(
        self,
        message_id: int,
        before: str,
        token: str,
        model: ModelInfo,
        settings: ChatSettings,
        *,
        tokens: ReplyTokens | None = None,
    ) -> Prompt:
        """What if the model had said `token` after `before` (the start of a reply's text)? A new version of the
        reply with that text, to be continued by the model; the original stays as the other version. `tokens`:
        the new version's tokens so far for the token view (the original's, then the one chosen, marked)."""
        reply = self._member(message_id)
        if reply.role != "assistant" or reply.parent_id is None:
            raise AppError("Only a reply can be branched.")
        if not reply.content.startswith(before):  # e.g. the tokens of a reply's reasoning, which is kept apart
            raise AppError("The text before that token is not the reply's text, so the reply cannot branch there.")
        branch = self.store.add_message(
            reply.conversation_id,
            reply.parent_id,
            "assistant",
            before + token,
            model=model.name,
            model_sha256=model.sha256,
            settings=settings,
        )
        prompt = self._go_on_with(branch, model, settings)
        if tokens is not None and self.reply is not None:
            self.reply.start_tokens(tokens)
        return prompt

    def keep(
        self,
        question: str,
        text: str,
        tokens: ReplyTokens,
        model: ModelInfo,
        settings: ChatSettings,
        *,
        stats: Mapping[str, Any],
    ) -> Message:
        """A reply made outside a stream (step mode's, token by token) with its tokens, saved complete: the answer
        to `question` (saved first, as Send saves it) or, with none, a new version of the answer to the conversation's
        last question (as Regenerate makes one)."""
        if question:
            self.ask(question, model, settings)
        else:
            thread = self.store.thread(self.conversation_id) if self.conversation_id is not None else []
            asked = self._last_question(thread)
            if asked < 0:
                raise AppError("There is no question in this conversation for the reply to answer.")
            self.answer(thread[asked], model, settings)
        assert self.reply is not None  # opened by ask or answer
        reply = self.reply
        reply.append(text)
        reply.start_tokens(tokens)
        self.reply = None
        return reply.finish(stats)

    @staticmethod
    def _last_question(thread: list[Message]) -> int:
        """Where the last of the user's messages is in `thread`; -1: none."""
        return max((index for index, message in enumerate(thread) if message.role == "user"), default=-1)

    def _go_on_with(self, reply: Message, model: ModelInfo, settings: ChatSettings) -> Prompt:
        """Reopens `reply`, the last message of its branch, for the model to continue."""
        assert reply.parent_id is not None  # a reply answers something
        self.store.update_settings(reply.conversation_id, settings)
        self.reply = self.store.continue_reply(reply.id)
        if not model.has_chat_template:
            return self.store.get_message(reply.parent_id).content + reply.content
        return self._messages(self.store.thread(reply.conversation_id), settings)

    def flip(self, message_id: int, step: int) -> list[Message]:
        """Shows the previous (-1) or next (+1) version of a message, with what follows it; returns the thread."""
        versions = self.store.siblings(message_id)
        index = [version.id for version in versions].index(message_id)
        chosen = versions[max(0, min(len(versions) - 1, index + step))]
        self.store.select_branch(chosen.conversation_id, chosen.id)
        return self.store.thread(chosen.conversation_id)

    def versions(self, message_id: int) -> tuple[int, int]:
        """(which, of how many) versions of a message: "2 of 3" after two regenerations and a flip back."""
        message = self.store.get_message(message_id)
        return self.store.versions(message.conversation_id).get(message_id, (1, 1))

    def _member(self, message_id: int) -> Message:
        message = self.store.get_message(message_id)
        if message.conversation_id != self.conversation_id:
            raise AppError("That message belongs to another conversation.")
        return message

    def answer(self, question: Message, model: ModelInfo, settings: ChatSettings) -> Prompt:
        """Opens a reply to `question` (as `reply`) and returns its prompt: the branch ending at that reply."""
        conversation_id = question.conversation_id
        self.store.update_settings(conversation_id, settings)
        self.reply = self.store.start_reply(
            conversation_id, question.id, model=model.name, model_sha256=model.sha256, settings=settings
        )
        if not model.has_chat_template:
            return question.content
        return self._messages(self.store.thread(conversation_id), settings)

    @staticmethod
    def _messages(thread: list[Message], settings: ChatSettings) -> list[dict[str, str]]:
        """The chat the engine reads. Answers only: reasoning stays out of later turns, as reasoning models'
        templates expect; a prompt that ends with a reply asks the engine to continue it (see core/client.py)."""
        system = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
        return system + [{"role": message.role, "content": message.content} for message in thread if message.content]

    def append(self, text: str) -> None:
        if self.reply is not None:
            self.reply.append(text)

    def append_tokens(self, tokens: list[TokenProbability]) -> None:
        """The probabilities of the text just appended, while the token view is on: kept with the reply."""
        if self.reply is not None:
            self.reply.append_tokens(tokens)

    def append_reasoning(self, text: str) -> None:
        """The model's thinking (core/reasoning.py splits it off): kept with the reply, never sent back to it."""
        if self.reply is not None:
            self.reply.append_reasoning(text)

    def flush(self) -> None:
        """Saves what streamed since the last save: a timer calls it, so a slow stream is not held back."""
        if self.reply is not None and self.reply.state == "streaming":
            self.reply.flush()

    def finish(self, stats: Mapping[str, Any]) -> None:
        """The reply ended normally, or the user stopped it (stats say which): it is kept as complete."""
        if self.reply is not None:
            self.reply.finish(stats)
            self.reply = None

    def interrupt(self, why: str = "") -> None:
        """The engine failed, the reply could not start, or the window is closing mid-reply: the text so far is
        kept, marked interrupted, with `why` in words when there is more to say."""
        if self.reply is not None and self.reply.state == "streaming":
            self.reply.interrupt({"note": why} if why else None)
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
