"""A reasoning model's reply split into its reasoning and its answer, as it streams and for stored text.

Reasoning models (DeepSeek-R1 distills, Qwen3, ...) write `<think> … </think>` before the answer. Some chat
templates open the think block in the prompt already, so the reply starts inside it and holds only the closing
tag: a splitter made with `starts_in_reasoning=True` expects that (`template_opens_reasoning` tells from the
template), and `split_reply`, which sees the whole text, tells it by itself.

Only a think block at the very start of the reply is reasoning. A `<think>` later in the answer, or a second one
after the first has closed, is answer text shown as written: a model explaining these tags must not have its
answer hidden, and the templates that reasoning models ship put the block first. Nested `<think>` inside
reasoning is reasoning text; the first `</think>` closes it.

A reply with no think block passes through unchanged: its answer pieces join to exactly the text fed in.
"""

from __future__ import annotations

from typing import Literal

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

Kind = Literal["reasoning", "answer"]
Piece = tuple[Kind, str]

# Where the splitter is: before anything but whitespace (a think block may still open), inside the reasoning,
# right after it (whitespace there does not start the answer), or in the answer (nothing more to look for).
_State = Literal["start", "reasoning", "after", "answer"]


class ReasoningSplitter:
    """Feed it the reply's text deltas in order; it returns (kind, text) pieces as soon as they are certain.

    It holds back only what could still turn out to be a tag (at most `len(CLOSE_TAG) - 1` characters), the
    whitespace at the start of the reply (a think block may follow it), and whitespace at the end of the reasoning
    (trimmed if the block closes there). A tag split across deltas ("<th" + "ink>") is recognised.
    """

    def __init__(self, *, starts_in_reasoning: bool = False) -> None:
        self._state: _State = "reasoning" if starts_in_reasoning else "start"
        self._held = ""
        self._reasoning_started = False  # leading whitespace of the reasoning is dropped

    def feed(self, text: str) -> list[Piece]:
        self._held += text
        pieces: list[Piece] = []
        while self._held:
            if self._state == "start":
                stripped = self._held.lstrip()
                if stripped.startswith(OPEN_TAG):
                    self._held = stripped[len(OPEN_TAG) :]
                    self._state = "reasoning"
                elif not stripped or OPEN_TAG.startswith(stripped):
                    break  # only whitespace, or the beginning of the tag: not yet known
                else:
                    self._state = "answer"  # the whitespace held so far is the answer's own
            elif self._state == "reasoning":
                if not self._feed_reasoning(pieces):
                    break
            elif self._state == "after":
                stripped = self._held.lstrip()
                if not stripped:
                    self._held = ""
                    break
                self._held = stripped
                self._state = "answer"
            else:
                pieces.append(("answer", self._held))
                self._held = ""
        return pieces

    def finish(self) -> list[Piece]:
        """What is still held at the end of the stream: an unclosed think block's tail stays reasoning."""
        held, self._held = self._held, ""
        if self._state == "start":
            # Only whitespace, or the start of a tag that never completed: text the model wrote, answer text.
            return [("answer", held)] if held else []
        if self._state == "reasoning":
            held = held.rstrip() if self._reasoning_started else held.strip()
            return [("reasoning", held)] if held else []
        return []  # after the reasoning nothing is held: the answer goes out as it comes, whitespace before it dropped

    def _feed_reasoning(self, pieces: list[Piece]) -> bool:
        """Moves what is certain out of the held text; False when the rest must wait for more text."""
        if not self._reasoning_started:
            self._held = self._held.lstrip()
            if not self._held:
                return False
        end = self._held.find(CLOSE_TAG)
        if end >= 0:
            self._emit_reasoning(pieces, self._held[:end].rstrip())
            self._held = self._held[end + len(CLOSE_TAG) :]
            self._state = "after"
            return True
        keep = _partial_tag_length(self._held, CLOSE_TAG)
        body = self._held[: len(self._held) - keep]
        certain = body.rstrip()  # trailing whitespace waits: trimmed if the block closes right after it
        self._emit_reasoning(pieces, certain)
        self._held = self._held[len(certain) :]
        return False

    def _emit_reasoning(self, pieces: list[Piece], text: str) -> None:
        if text:
            pieces.append(("reasoning", text))
            self._reasoning_started = True


def _partial_tag_length(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `tag`."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0


def split_reply(text: str) -> tuple[str | None, str]:
    """(reasoning or None, answer) of a whole stored reply.

    A `</think>` with no `<think>` before it means the prompt opened the block, so what precedes it is reasoning.
    An unclosed think block at the start is all reasoning (the reply was cut short while the model was thinking).
    """
    close = text.find(CLOSE_TAG)
    opened_in_prompt = close >= 0 and OPEN_TAG not in text[:close]
    splitter = ReasoningSplitter(starts_in_reasoning=opened_in_prompt)
    reasoning: list[str] = []
    answer: list[str] = []
    for kind, piece in [*splitter.feed(text), *splitter.finish()]:
        (reasoning if kind == "reasoning" else answer).append(piece)
    return ("".join(reasoning) or None), "".join(answer)


def template_opens_reasoning(chat_template: str | None) -> bool:
    """Whether a chat template opens the think block in the prompt, so the reply starts inside the reasoning.

    DeepSeek-R1 distills end the generation prompt with `<think>\\n`; Qwen3 adds `<think>\\n\\n</think>` only to turn
    thinking off, and otherwise lets the model open the block itself.
    """
    if not chat_template:
        return False
    generation = chat_template.rfind("add_generation_prompt")
    if generation < 0:
        return False
    tail = chat_template[generation:]
    opened = tail.rfind(OPEN_TAG)
    return opened >= 0 and CLOSE_TAG not in tail[opened:]
