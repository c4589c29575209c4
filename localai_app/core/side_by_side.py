"""Side by side: one prompt to two models (or one model with two settings), saved as one conversation.

Stored without a schema of its own: the conversation's settings have `layout` SIDE_BY_SIDE; the first question has
two replies, the left side's first (siblings, like the versions of a reply), and each side goes on in its own branch
from its reply: a follow-up question is saved under each side's latest message, once per side. Each reply keeps its
model, settings and stats, as every reply does, so exports and the JSON format need nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from localai_app.core.chat_session import ChatSession
from localai_app.core.context import Prompt
from localai_app.core.conversations import SIDE_BY_SIDE, ChatSettings, ConversationStore, Message, title_from
from localai_app.core.library import ModelInfo

SIDES = 2


def threads_per_side(threads: int) -> int:
    """Each side's engine gets an equal share of the threads, so the two never fight over one core."""
    return max(1, threads // SIDES)


def settings_label(settings: ChatSettings) -> str:
    """The sampling settings that tell two sides apart, in a line: a pane's caption and an export's heading."""
    seed = "random seed" if settings.seed is None else f"seed {settings.seed}"
    words = [f"temperature {settings.temperature:g}", f"top-p {settings.top_p:g}", seed]
    if settings.system_prompt:
        words.append(f"system prompt “{' '.join(settings.system_prompt.split())}”")
    return ", ".join(words)


def merged(branches: Sequence[Sequence[Message]]) -> list[Message]:
    """Both sides' branches as one reading order: each question once, then each side's reply to it."""
    reading: list[Message] = []
    seen: set[int] = set()
    for depth in range(max((len(branch) for branch in branches), default=0)):
        asked: set[str] = set()
        for branch in branches:
            if depth >= len(branch) or branch[depth].id in seen:
                continue
            message = branch[depth]
            if message.role == "user" and message.content in asked:  # the same follow-up, saved once per side
                continue
            seen.add(message.id)
            if message.role == "user":
                asked.add(message.content)
            reading.append(message)
    return reading


def branch_to(store: ConversationStore, message_id: int) -> list[Message]:
    """The messages from the conversation's first one down to `message_id`."""
    branch = [store.get_message(message_id)]
    while branch[-1].parent_id is not None:
        branch.append(store.get_message(branch[-1].parent_id))
    return branch[::-1]


def branches(store: ConversationStore, conversation_id: int) -> list[list[Message]]:
    """Each side's branch, left first. A side that has nothing yet (the app stopped between saving the two replies)
    is the first question alone, and its next follow-up starts its branch from there."""
    thread = store.thread(conversation_id)
    if not thread:
        return [[] for _ in range(SIDES)]
    first = thread[0]
    starts = store.children(first.id)[:SIDES]
    return [branch_to(store, store.leaf_under(start.id).id) for start in starts] + [
        [first] for _ in range(SIDES - len(starts))
    ]


def is_side_by_side(settings: ChatSettings) -> bool:
    return settings.layout == SIDE_BY_SIDE


class SideBySideSession:
    """The side-by-side conversation being chatted in: one ChatSession per side, which writes that side's reply."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        self.conversation_id: int | None = None  # None: the next question starts a new conversation
        self.sides = [ChatSession(store) for _ in range(SIDES)]

    def open(self, conversation_id: int) -> list[list[Message]]:
        """Makes a stored side-by-side conversation the current one; returns each side's branch."""
        for side in self.sides:
            side.open(conversation_id)
        self.conversation_id = conversation_id
        return branches(self.store, conversation_id)

    def start_new(self) -> None:
        self.conversation_id = None
        for side in self.sides:
            side.start_new()

    def ask(self, text: str, choices: Sequence[tuple[ModelInfo, ChatSettings]]) -> list[Prompt]:
        """Saves the question and an empty reply on each side (left, right); returns each side's prompt."""
        marked = [replace(settings, layout=SIDE_BY_SIDE) for _, settings in choices]
        if self.conversation_id is None:
            conversation = self.store.create_conversation(title_from(text), marked[0]).id
            question = self.store.add_message(conversation, None, "user", text)
            questions: list[Message | None] = [question, question]
            leaves: list[Message | None] = [None] * SIDES
        else:
            conversation = self.conversation_id
            questions = [None] * SIDES
            leaves = [branch[-1] if branch else None for branch in branches(self.store, conversation)]
        self.conversation_id = conversation
        prompts: list[Prompt] = []
        models = [model for model, _ in choices]
        for side, shared, leaf, model, settings in zip(self.sides, questions, leaves, models, marked, strict=True):
            side.conversation_id = conversation
            # A follow-up is asked under this side's latest message just before it is answered: the prompt is the
            # branch that ends at the new reply.
            question = shared or self.store.add_message(conversation, leaf.id if leaf else None, "user", text)
            prompts.append(side.answer(question, model, settings))
        # The conversation's own settings and branch on show are the left side's, as a chat window would show it.
        self.store.update_settings(conversation, marked[0])
        left_reply = self.sides[0].reply
        if left_reply is not None:
            self.store.select_leaf(conversation, left_reply.message_id)
        return prompts
