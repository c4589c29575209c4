"""Honest context handling: a conversation that has outgrown the model's context is never cut silently. Either the
oldest turns are left out of the prompt (the system prompt always stays, and the user is told how many), or the
reply is not started and the user is told why and what to do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from localai_app.core.errors import AppError

DROP_OLDEST = "drop_oldest"
STOP = "stop"
POLICIES = {DROP_OLDEST: "Leave out the oldest turns (the system prompt stays)", STOP: "Stop and tell me"}
NEARLY_FULL = 0.8  # from this share of the context on, the user is warned before anything has to be left out

Messages = list[dict[str, str]]
Prompt = str | Messages  # a completion text or a chat


class ContextFullError(AppError):
    pass


@dataclass(frozen=True)
class Fitted:
    messages: Messages
    tokens: int  # of the prompt sent
    left_out: int  # earlier messages not sent this time (they stay in the conversation)


def reply_room(context: int, max_tokens: int) -> int:
    """Tokens kept free for the reply: its maximum, but never more than a quarter of the context, so a large
    maximum does not push out a conversation that would leave enough room for a normal answer."""
    return min(max_tokens, context // 4)


def fit_to_context(
    messages: Messages, count: Callable[[Messages], int], context: int, max_tokens: int, policy: str
) -> Fitted:
    """The prompt to send: all of `messages` when they fit with room for the reply; otherwise, under DROP_OLDEST,
    without the oldest turns, whole user-assistant exchanges at a time so the prompt still starts with the user's
    turn (many chat templates insist on it). Raises ContextFullError under STOP, or when the last message alone
    does not fit."""
    budget = context - reply_room(context, max_tokens)
    tokens = count(messages)
    if tokens <= budget:
        return Fitted(messages, tokens, 0)
    if policy == STOP:
        raise ContextFullError(
            f"This conversation is {tokens:,} tokens and the {context:,}-token context needs room for the reply, so "
            "nothing was sent. Start a new chat, load the model with a longer context, or choose in Settings to "
            "leave out the oldest turns."
        )
    system = [message for message in messages if message["role"] == "system"]
    turns = [message for message in messages if message["role"] != "system"]
    left_out = 0
    while len(turns) > 1 and tokens > budget:
        cut = 1
        while cut < len(turns) - 1 and turns[cut]["role"] != "user":
            cut += 1  # the rest of that exchange goes with it
        turns, left_out = turns[cut:], left_out + cut
        tokens = count(system + turns)
    if tokens > budget:
        raise ContextFullError(
            f"Your message alone is {tokens:,} tokens, more than the {context:,}-token context leaves room for "
            "with a reply. Shorten it, or load the model with a longer context."
        )
    return Fitted(system + turns, tokens, left_out)


@dataclass(frozen=True)
class FittedPrompt:
    prompt: Prompt  # what the engine is sent
    tokens: int
    context: int  # the loaded context length
    left_out: int  # earlier messages not sent this time


def fit_prompt(
    prompt: Prompt, count_tokens: Callable[[Prompt], tuple[int, int]], max_tokens: int, policy: str
) -> FittedPrompt:
    """What a reply to `prompt` sends, measured by `count_tokens` (the engine's: tokens, context length): a chat fitted
    to the context by fit_to_context, a completion text as it is. One function for the window's send path and the
    prompt inspector, so the inspector shows exactly what is sent. Raises what `count_tokens` and fit_to_context do."""
    tokens, context = count_tokens(prompt)
    if isinstance(prompt, str):
        return FittedPrompt(prompt, tokens, context, 0)
    whole = prompt

    def count(messages: Messages) -> int:
        return tokens if messages is whole else count_tokens(messages)[0]

    fitted = fit_to_context(prompt, count, context, max_tokens, policy)
    return FittedPrompt(fitted.messages, fitted.tokens, context, fitted.left_out)
