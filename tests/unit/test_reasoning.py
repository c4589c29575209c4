"""Splitting a reply into reasoning and answer: streamed in any cut, and whole."""

from __future__ import annotations

import pytest

from localai_app.core.reasoning import (
    CLOSE_TAG,
    Piece,
    ReasoningSplitter,
    split_reply,
    template_opens_reasoning,
)

R1_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<\uff5cAssistant\uff5c><think>\\n'}}{% endif %}"
)
QWEN3_TEMPLATE = (
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def stream(deltas: list[str], *, starts_in_reasoning: bool = False) -> tuple[str, str, list[Piece]]:
    splitter = ReasoningSplitter(starts_in_reasoning=starts_in_reasoning)
    pieces = [piece for delta in deltas for piece in splitter.feed(delta)] + splitter.finish()
    reasoning = "".join(text for kind, text in pieces if kind == "reasoning")
    answer = "".join(text for kind, text in pieces if kind == "answer")
    return reasoning, answer, pieces


def cuts(text: str) -> list[list[str]]:
    """The text in two deltas cut at every position, and one character at a time."""
    return [[text[:i], text[i:]] for i in range(len(text) + 1)] + [list(text)]


REPLY = "<think>\nThe user greets me. I should greet back.\n</think>\n\nHello! How can I help?"


@pytest.mark.parametrize("deltas", cuts(REPLY))
def test_a_think_block_is_split_off_wherever_the_deltas_are_cut(deltas: list[str]) -> None:
    reasoning, answer, pieces = stream(deltas)
    assert reasoning == "The user greets me. I should greet back."
    assert answer == "Hello! How can I help?"  # the blank line after </think> does not start the answer
    assert all(text for _, text in pieces)
    kinds = [kind for kind, _ in pieces]
    assert kinds == sorted(kinds, key=["reasoning", "answer"].index)  # all reasoning first, then all answer


@pytest.mark.parametrize("deltas", cuts("  Plain answer <b>with</b> a < sign and </think tags.\n"))
def test_a_reply_without_tags_passes_through_unchanged(deltas: list[str]) -> None:
    reasoning, answer, _ = stream(deltas)
    assert reasoning == ""
    assert answer == "  Plain answer <b>with</b> a < sign and </think tags.\n"  # its own whitespace kept


@pytest.mark.parametrize("deltas", cuts("Okay, the user wants a poem.\n</think>\n\nRoses are red."))
def test_a_prompt_that_opened_the_block_leaves_only_the_closing_tag(deltas: list[str]) -> None:
    reasoning, answer, _ = stream(deltas, starts_in_reasoning=True)
    assert (reasoning, answer) == ("Okay, the user wants a poem.", "Roses are red.")


@pytest.mark.parametrize("deltas", cuts("<think>Still weighing the options, maybe </th"))
def test_an_unclosed_think_block_at_the_end_is_all_reasoning(deltas: list[str]) -> None:
    reasoning, answer, _ = stream(deltas)
    assert (reasoning, answer) == ("Still weighing the options, maybe </th", "")


def test_only_what_could_be_a_tag_is_held_back() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("<think>Let me see") == [("reasoning", "Let me see")]
    assert splitter.feed(" more </thi") == [("reasoning", " more")]  # " </thi" may be the closing tag
    assert splitter.feed("nk about it") == [("reasoning", " </think about it")]  # it was not
    assert splitter.feed("</think>") == []
    assert splitter.feed(" \n") == []  # whitespace after the block does not start the answer
    assert splitter.feed("Yes.") == [("answer", "Yes.")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Later think tags are the answer's own text: a model explaining them must not have its answer hidden.
        ("Use <think> to reason.", (None, "Use <think> to reason.")),
        ("<think>a</think>B <think>c</think> d", ("a", "B <think>c</think> d")),
        ("<think>outer <think> inner</think>answer", ("outer <think> inner", "answer")),
        ("\n\n<think>\nx\n</think>\n\ny", ("x", "y")),
        # Qwen3 with thinking switched off: an empty block, so no reasoning.
        ("<think>\n\n</think>\n\nHi", (None, "Hi")),
        ("The prompt opened it.\n</think>\nAnswer", ("The prompt opened it.", "Answer")),
        ("<think>cut short while thinking", ("cut short while thinking", "")),
        ("", (None, "")),
    ],
)
def test_a_stored_reply_is_split_in_one_go(text: str, expected: tuple[str | None, str]) -> None:
    assert split_reply(text) == expected


def test_a_stray_closing_tag_in_a_streamed_answer_stays_text() -> None:
    # Streaming cannot take back text already shown as the answer; a template that opens the block says so first.
    _, answer, _ = stream(["Hello ", CLOSE_TAG, " there"])
    assert answer == "Hello </think> there"


def test_templates_that_open_the_block_are_recognised() -> None:
    assert template_opens_reasoning(R1_TEMPLATE)
    assert not template_opens_reasoning(QWEN3_TEMPLATE)
    assert not template_opens_reasoning("{{ messages }}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    assert not template_opens_reasoning(None)
