"""The glass box on the command line: a model's tokens for any text, and each generated token's probability with
the likeliest alternatives (`chat --probs K`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from localai_app.core.engine_manager import manager_for
from localai_app.core.errors import AppError
from localai_app.core.estimate import Overrides
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.replies import Delta, TokenProbability

# The engine gives at most this many alternatives per token (engine/protocol.py MAX_TOP_LOGPROBS; the CLI may not
# import the engine package, which loads llama.cpp).
MAX_PROBS = 20


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    tokenize = commands.add_parser("tokenize", help="show how a model splits text into tokens")
    tokenize.add_argument("model", help="a library name or a path to a .gguf file")
    tokenize.add_argument("text")
    tokenize.add_argument("--json", action="store_true", help="print a JSON list of {id, piece}")
    return tokenize


def add_chat_options(chat: argparse.ArgumentParser) -> None:
    chat.add_argument(
        "--probs",
        type=int,
        metavar="K",
        help=f"print each generated token with its probability and the K (0 to {MAX_PROBS}) likeliest alternatives",
    )
    chat.add_argument("--json", action="store_true", help="with --probs: print one JSON object per generated token")


def wanted_probs(args: argparse.Namespace) -> int | None:
    """How many alternatives `chat` should ask for; None: plain text output."""
    if args.probs is None:
        if args.json:
            raise AppError("--json prints tokens with their probabilities: add --probs K.")
        return None
    if not 0 <= args.probs <= MAX_PROBS:
        raise AppError(f"--probs must be between 0 and {MAX_PROBS}.")
    return int(args.probs)


def print_tokens(delta: Delta, *, as_json: bool) -> None:
    """One line per generated token in `delta`."""
    for token in delta.probabilities:
        print(json.dumps(token_json(token)) if as_json else token_line(token), flush=True)


def token_json(token: TokenProbability) -> dict[str, Any]:
    return {
        "text": token.token,
        "id": token.id,
        "probability": token.probability,
        "alternatives": [
            {"token": alt.token, "id": alt.id, "probability": alt.probability} for alt in token.alternatives
        ],
    }


def token_line(token: TokenProbability) -> str:
    # JSON quoting makes spaces and newlines inside a token visible.
    line = f"{_id_text(token.id):>7}  {token.probability:7.2%}  {json.dumps(token.token, ensure_ascii=False)}"
    if token.alternatives:
        others = ", ".join(
            f"{json.dumps(alt.token, ensure_ascii=False)} {alt.probability:.2%}" for alt in token.alternatives
        )
        line += f"   alternatives: {others}"
    return line


def _id_text(token: int | None) -> str:
    return "?" if token is None else str(token)


def tokenize(paths: AppPaths, args: argparse.Namespace, overrides: Overrides) -> int:
    model = Library(paths).find(args.model)
    manager = manager_for(paths, overrides)
    try:
        tokens = manager.client_for(model).tokenize(args.text, with_pieces=True)
    finally:
        manager.shutdown()
    if args.json:
        print(json.dumps([{"id": token, "piece": _piece_json(piece)} for token, piece in tokens]))
        return 0
    for token, piece in tokens:
        shown = json.dumps(piece, ensure_ascii=False) if isinstance(piece, str) else f"bytes {piece.hex(' ')}"
        print(f"{token:>7}  {shown}")
    print(f"{len(tokens)} token{'s' if len(tokens) != 1 else ''}")
    return 0


def _piece_json(piece: str | bytes) -> str | list[int]:
    """As llama-server writes it: text, or the byte values of a token that is not whole UTF-8."""
    return piece if isinstance(piece, str) else list(piece)
