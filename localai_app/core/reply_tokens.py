"""A reply's tokens as the token view showed them while it streamed (each with its probability and the likeliest
alternatives), kept with the reply so that a reopened conversation shows them again, and their encoding in the store.

Encoding: each save of a streaming reply adds one chunk with the tokens since the previous save (so a save costs
what it adds, however long the reply), as zlib-compressed compact JSON. Measured on the starter model with 10
alternatives a token (96 tokens): plain JSON took 406 bytes a token, compact JSON with log-probabilities rounded
to 4 decimals (the view shows probabilities to 0.1 %) 247, and zlib brings that to 92-120 (chunks of 84 down to 3
tokens: alternatives repeat the same few tokens). A 512-token reply adds about 50-60 kB; JSON rather than a binary
layout keeps it readable with any SQLite tool, and zlib takes most of the difference back.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

from localai_app.core.replies import TokenChoice, TokenProbability

LOGPROB_DECIMALS = 4


@dataclass(frozen=True)
class ReplyTokens:
    before: str  # the reply's text before its first token here, whose probabilities were not recorded
    tokens: list[TokenProbability] = field(default_factory=list)
    chosen: frozenset[int] = frozenset()  # positions of tokens picked by the user in a what-if, not sampled

    @property
    def text(self) -> str:
        """The reply's text these tokens cover, from its start."""
        return self.before + "".join(token.token for token in self.tokens)


def encode_chunk(tokens: list[TokenProbability], chosen: frozenset[int], first: int) -> bytes:
    """`tokens`, the reply's from position `first` on, as one stored chunk."""
    entries: list[list[object]] = []
    for position, token in enumerate(tokens, start=first):
        entry: list[object] = [
            token.token,
            round(token.logprob, LOGPROB_DECIMALS),
            token.id,
            [[choice.token, round(choice.logprob, LOGPROB_DECIMALS), choice.id] for choice in token.alternatives],
        ]
        if position in chosen:
            entry.append(1)
        entries.append(entry)
    return zlib.compress(json.dumps(entries, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def decode_chunk(data: bytes, first: int) -> tuple[list[TokenProbability], set[int]]:
    """The tokens of a chunk that starts at position `first`, and which of their positions the user chose."""
    tokens: list[TokenProbability] = []
    chosen: set[int] = set()
    for position, entry in enumerate(json.loads(zlib.decompress(data)), start=first):
        text, logprob, token_id, alternatives = entry[:4]
        choices = [TokenChoice(choice[0], choice[1], choice[2]) for choice in alternatives]
        tokens.append(TokenProbability(text, logprob, choices, token_id))
        if len(entry) > 4:
            chosen.add(position)
    return tokens, chosen
