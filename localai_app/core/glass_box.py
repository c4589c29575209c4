"""What the prompt inspector and the tokenizer playground show, worked out from the engine's llama-server routes.

No Qt: the GUI calls these off its thread. Every call blocks on the engine (or a remote server), and a server that
lacks a route raises RouteUnavailableError with the sentence the views show instead.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from localai_app.core.context import Prompt, fit_prompt
from localai_app.core.engine_process import EngineOptions, EngineProcess
from localai_app.core.errors import EngineError, TokenCountUnavailableError
from localai_app.core.gguf_header import read_header

if TYPE_CHECKING:
    from localai_app.core.client import EngineClient
    from localai_app.core.library import ModelInfo

VOCAB_CONTEXT = 512  # a vocabulary-only engine never decodes: the smallest context keeps its start cheap


@dataclass(frozen=True)
class Token:
    id: int
    piece: str | bytes  # bytes: part of a UTF-8 character
    special: bool  # a control token (turn markers, BOS), which typed text can never produce

    @property
    def shown(self) -> str:
        """The piece as text; a part of a character as its bytes, written as llama.cpp names byte tokens."""
        return self.piece if isinstance(self.piece, str) else "".join(f"<0x{byte:02X}>" for byte in self.piece)


@dataclass(frozen=True)
class Template:
    source: str
    sha256: str


@dataclass(frozen=True)
class PromptInspection:
    text: str  # exactly what the model is fed, before tokenization
    chat: bool  # rendered by the model's chat template; False: a plain completion prompt
    tokens: list[Token]
    context_length: int | None  # None: the server does not say
    left_out: int = 0  # earlier messages the context policy leaves out of what is sent


def tokens_of(client: EngineClient, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[Token]:
    """`text` as the model reads it with llama.cpp's switches, each token marked special or not.

    Control tokens are found without trusting how their pieces look (`<...>` is also ordinary text): typed text
    read with parse_special off never yields one, so only ids missing from that reading are candidates, and a
    candidate is special when its own piece reads differently with parse_special on and off.
    """
    tokens = client.tokenize(text, add_special=add_special, parse_special=parse_special)
    typed = set(client.tokenize(text, with_pieces=False, add_special=False, parse_special=False))
    candidates = {piece for token, piece in tokens if token not in typed and isinstance(piece, str)}
    special = {piece for piece in candidates if _is_special(client, piece)}
    return [Token(token, piece, isinstance(piece, str) and piece in special) for token, piece in tokens]


def _is_special(client: EngineClient, piece: str) -> bool:
    if not piece:  # a token with no text that typing did not produce: added by the tokenizer (BOS, EOS)
        return True
    as_token = client.tokenize(piece, with_pieces=False, parse_special=True)
    as_text = client.tokenize(piece, with_pieces=False, parse_special=False)
    return as_token != as_text


def inspect_prompt(client: EngineClient, prompt: Prompt, max_tokens: int, policy: str) -> PromptInspection:
    """The prompt a reply would send, as the engine feeds it to llama.cpp: fitted to the context as the send path
    fits it (fit_prompt: the oldest turns may be left out), then a chat after the model's template (its special
    tokens read as such), or completion text with BOS added and look-alike special tokens kept as text."""
    try:
        fitted = fit_prompt(prompt, client.count_tokens, max_tokens, policy)
    except TokenCountUnavailableError:  # a remote server: sent whole, as the send path does; the context is unknown
        sent, context_length, left_out = prompt, None, 0
    else:
        sent, context_length, left_out = fitted.prompt, fitted.context, fitted.left_out
    chat = isinstance(sent, list)
    text = client.apply_template(sent) if isinstance(sent, list) else sent
    tokens = tokens_of(client, text, add_special=not chat, parse_special=chat)
    return PromptInspection(text, chat, tokens, context_length, left_out)


def chat_template(model: ModelInfo) -> Template | None:
    """The chat template in `model`'s GGUF header (read with the bounded reader); None for a model without one, or
    a remote model, whose file is not here."""
    if model.server or not model.has_chat_template:
        return None
    source = read_header(model.path).string("tokenizer.chat_template")
    if source is None:
        return None
    return Template(source, hashlib.sha256(source.encode("utf-8")).hexdigest())


class VocabularyEngine:
    """`model`'s tokenizer alone, in an engine process of its own (--vocab-only): a second model for the tokenizer
    playground to compare, without a second full load (its memory, its seconds) beside the chat's engine.

    Started on first use, stopped by close(); both block, so call them off the GUI thread.
    """

    def __init__(self, model: ModelInfo, *, log_file: Path | None = None) -> None:
        self.model = model
        self._log_file = log_file
        self._process: EngineProcess | None = None
        self._client: EngineClient | None = None
        self._lock = threading.Lock()  # a start and a close may be asked for from two pool threads

    def client(self) -> EngineClient:
        with self._lock:
            if self._client is None:
                # Imported here: httpx is slow to import and the GUI's first frame should not wait for it.
                from localai_app.core.client import EngineClient

                options = EngineOptions(
                    context_length=VOCAB_CONTEXT, threads=1, vocab_only=True, model_id=self.model.name
                )
                process = EngineProcess(self.model.path, options, log_file=self._log_file)
                try:
                    endpoint = process.start()
                except EngineError:
                    process.stop()
                    raise
                self._process = process
                self._client = EngineClient(endpoint.base_url, endpoint.token)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            if self._process is not None:
                self._process.stop()
            self._client = self._process = None
