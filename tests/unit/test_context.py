"""A conversation longer than the context: the oldest exchanges are left out (system prompt kept, the user told
how many), or nothing is sent and the user is told why; never a silent cut."""

from __future__ import annotations

import pytest

from localai_app.core.context import (
    DROP_OLDEST,
    STOP,
    ContextFullError,
    FittedPrompt,
    Messages,
    Prompt,
    fit_prompt,
    fit_to_context,
    reply_room,
)


def words(messages: Messages) -> int:
    """A stand-in tokenizer: one token per word plus four per message for the template's markers."""
    return sum(len(message["content"].split()) + 4 for message in messages)


CONVERSATION: Messages = [
    {"role": "system", "content": "Be brief."},  # 6
    {"role": "user", "content": "one " * 20},  # 24
    {"role": "assistant", "content": "two " * 20},  # 24
    {"role": "user", "content": "three " * 20},  # 24
    {"role": "assistant", "content": "four " * 20},  # 24
    {"role": "user", "content": "five"},  # 5
]


def test_what_fits_is_sent_whole() -> None:
    fitted = fit_to_context(CONVERSATION, words, context=400, max_tokens=100, policy=STOP)
    assert fitted.messages == CONVERSATION and fitted.left_out == 0 and fitted.tokens == 107


def test_the_oldest_exchanges_go_first_and_the_system_prompt_stays() -> None:
    fitted = fit_to_context(CONVERSATION, words, context=120, max_tokens=30, policy=DROP_OLDEST)  # budget 90
    assert [message["content"].split()[0] for message in fitted.messages] == ["Be", "three", "four", "five"]
    assert fitted.left_out == 2 and fitted.tokens == 59
    assert fitted.messages[1]["role"] == "user"  # still starts with the user's turn


def test_stop_sends_nothing_and_says_why() -> None:
    with pytest.raises(ContextFullError, match="107 tokens and the 120-token context"):
        fit_to_context(CONVERSATION, words, context=120, max_tokens=30, policy=STOP)


def test_a_last_message_too_long_alone_is_refused_under_either_policy() -> None:
    huge: Messages = [{"role": "user", "content": "word " * 500}]
    for policy in (DROP_OLDEST, STOP):
        with pytest.raises(ContextFullError):
            fit_to_context(huge, words, context=256, max_tokens=64, policy=policy)


def test_the_reply_keeps_at_most_a_quarter_of_the_context() -> None:
    assert reply_room(8192, 512) == 512
    assert reply_room(8192, 32768) == 2048


def test_fit_prompt_measures_once_and_fits_a_chat_as_the_send_path_does() -> None:
    asked: list[Prompt] = []

    def engine_count(prompt: Prompt) -> tuple[int, int]:  # the engine's answer: (tokens, context length)
        asked.append(prompt)
        return (len(prompt.split()) if isinstance(prompt, str) else words(prompt)), 120

    text = fit_prompt("a completion text is sent as it is", engine_count, max_tokens=30, policy=STOP)
    assert (text.prompt, text.tokens, text.context, text.left_out) == ("a completion text is sent as it is", 8, 120, 0)
    asked.clear()
    chat = fit_prompt(CONVERSATION, engine_count, max_tokens=30, policy=DROP_OLDEST)
    assert chat == FittedPrompt(fit_to_context(CONVERSATION, words, 120, 30, DROP_OLDEST).messages, 59, 120, 2)
    assert asked[0] is CONVERSATION and CONVERSATION not in asked[1:]  # the whole one measured once
