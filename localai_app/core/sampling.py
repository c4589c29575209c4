"""What the sampler does to the next token's distribution: the glass box's sampling lab and step mode.

The chain is llama-cpp-python 0.3.36's (`Llama._init_sampler`): top-k, then typical (off: typical_p is 1), top-p,
min-p, temperature, and a draw. Temperature 0 skips the chain for a greedy pick of the likeliest token. Top-p and
min-p read the logits before temperature, so temperature only reshapes what they kept. Worked out here from the
raw top-N (id, logprob) of the position (llama-server's /completion with n_probs), so sliders move the chart with
no engine call; the engine samples with the same settings to mark the token it picks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from localai_app.core.glass_box import inspect_prompt
from localai_app.core.replies import SamplingOptions, TokenChoice, TokenProbability

if TYPE_CHECKING:
    from localai_app.core.client import EngineClient
    from localai_app.core.context import Prompt
    from localai_app.core.conversations import ChatSettings

Cut = Literal["top-k", "top-p", "min-p", "temperature 0"]


@dataclass(frozen=True)
class Candidate:
    choice: TokenChoice
    before: float  # its probability from the raw logits: temperature 1, nothing cut
    after: float  # its chance of being drawn with the settings; 0 when cut
    cut_by: Cut | None  # the first sampler that removed it; None: it can be drawn


@dataclass(frozen=True)
class Distribution:
    candidates: list[Candidate]  # likeliest first
    # True: tokens beyond those shown may be drawn too (no cut fell among them), so `after` is somewhat high.
    open_tail: bool

    @property
    def drawable(self) -> list[Candidate]:
        return [candidate for candidate in self.candidates if candidate.cut_by is None]


@dataclass(frozen=True)
class Continuation:
    """What llama-server's /completion answered: the text, the tokens generated (the last may be the end-of-generation
    token, with empty text) with the top alternatives at each position, and whether the model ended there."""

    text: str
    ids: list[int]  # the tokens generated (the end-of-generation token too, where the model ended)
    tokens: list[TokenProbability]  # with their alternatives; empty unless some were asked for
    ended: bool


def prompt_ids(client: EngineClient, prompt: Prompt, settings: ChatSettings) -> list[int]:
    """The ids a reply to `prompt` would have the model read: fitted to the context and tokenized exactly as the
    send path does it (the prompt inspector's `inspect_prompt`), so a long conversation loses its oldest turns here
    too instead of being refused. Step mode goes on from these ids exactly."""
    inspection = inspect_prompt(client, prompt, settings.max_tokens, settings.context_policy)
    return [token.id for token in inspection.tokens]


def apply_sampler(alternatives: list[TokenChoice], sampling: SamplingOptions) -> Distribution:
    """The top alternatives of one position (raw log-probabilities over the whole vocabulary), through the chain."""
    shown = sorted(alternatives, key=lambda choice: choice.logprob, reverse=True)
    if not shown:
        return Distribution([], open_tail=True)
    before = [math.exp(choice.logprob) for choice in shown]
    cuts: list[Cut | None] = [None] * len(shown)
    # Probability mass of the tokens not shown, which stay in play until a cut falls among those shown.
    tail = max(0.0, 1.0 - sum(before))
    open_tail = tail > 1e-9  # no tail: those shown are the whole vocabulary (rounding aside)

    def cut(start: int, why: Cut) -> None:
        for index in range(start, len(shown)):
            if cuts[index] is None:
                cuts[index] = why

    if sampling.temperature <= 0:
        cut(1, "temperature 0")
        return _result(shown, before, cuts, [1.0] + [0.0] * (len(shown) - 1), open_tail=False)
    if 0 < sampling.top_k <= len(shown):  # top_k 0: off, as in llama.cpp
        cut(sampling.top_k, "top-k")
        open_tail = False
    if sampling.top_p < 1.0:
        kept = [index for index, why in enumerate(cuts) if why is None]
        # llama.cpp renormalises over the candidates left and keeps tokens until their sum reaches top_p. With the
        # tail open, its mass is all the vocabulary's beyond those shown: exact with top-k off, close with a top-k
        # beyond them (its cut falls among tokens too unlikely to move the sum much).
        total = sum(before[index] for index in kept) + (tail if open_tail else 0.0)
        running = 0.0
        for index in kept:
            running += before[index] / total
            if running >= sampling.top_p:
                cut(index + 1, "top-p")
                open_tail = False
                break
    if sampling.min_p > 0.0:
        # Kept: a logit at least that of the likeliest plus log(min_p), that is probability >= min_p x the top's.
        floor = shown[0].logprob + math.log(sampling.min_p)
        for index, choice in enumerate(shown):
            if choice.logprob < floor and cuts[index] is None:
                cuts[index] = "min-p"
        if shown[-1].logprob < floor:  # every token not shown is less likely still
            open_tail = False
    weights = [
        math.exp((choice.logprob - shown[0].logprob) / sampling.temperature) if why is None else 0.0
        for choice, why in zip(shown, cuts, strict=True)
    ]
    total = sum(weights)
    return _result(shown, before, cuts, [weight / total for weight in weights], open_tail=open_tail)


def _result(
    shown: list[TokenChoice], before: list[float], cuts: list[Cut | None], after: list[float], *, open_tail: bool
) -> Distribution:
    candidates = [
        Candidate(choice, probability, chance, why)
        for choice, probability, chance, why in zip(shown, before, after, cuts, strict=True)
    ]
    return Distribution(candidates, open_tail)
