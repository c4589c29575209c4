"""What a reply is made of, for every caller of the engine protocol: options in, text deltas and stats out.

Kept apart from the HTTP client so the GUI can name these types without importing httpx at start-up.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True)
class SamplingOptions:
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int | None = None
    top_logprobs: int | None = None  # None: no probabilities


class TokenChoice(NamedTuple):
    """One of the likeliest tokens at a position. A tuple whose first two items are (token, logprob)."""

    token: str
    logprob: float
    id: int | None = None  # None: the server does not report ids (OpenAI's own format has none)

    @property
    def probability(self) -> float:
        return math.exp(self.logprob)


@dataclass(frozen=True)
class TokenProbability:
    token: str
    logprob: float
    alternatives: list[TokenChoice] = field(default_factory=list)  # likeliest first
    id: int | None = None

    @property
    def probability(self) -> float:
        return math.exp(self.logprob)


@dataclass(frozen=True)
class Delta:
    text: str
    probabilities: list[TokenProbability] = field(default_factory=list)


@dataclass(frozen=True)
class ReplyStats:
    ttft_ms: float
    completion_tokens: int
    prompt_tokens: int
    tokens_per_second: float
    finish_reason: str
    total_ms: float
    notes: tuple[str, ...] = ()  # e.g. why this reply was slower than this machine should manage

    def as_dict(self) -> dict[str, Any]:
        return {
            "notes": list(self.notes),
            "ttft_ms": round(self.ttft_ms, 1),
            "completion_tokens": self.completion_tokens,
            "prompt_tokens": self.prompt_tokens,
            "tokens_per_second": round(self.tokens_per_second, 2),
            "finish_reason": self.finish_reason,
            "total_ms": round(self.total_ms, 1),
        }


ReplyStream = Generator["Delta | ReplyStats", None, None]
"""Text deltas then one ReplyStats; closing it early stops generation on the server."""
