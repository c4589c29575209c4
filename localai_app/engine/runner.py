"""The one place that drives llama-cpp-python: load a model, turn a prompt into a stream of tokens.

Probabilities come from the logits of the position just sampled, which llama.cpp keeps without
`logits_all=True`; loading with `logits_all` made generation 2.6-3.5 times slower here, so every chat would pay
for a feature few requests use.
"""

from __future__ import annotations

import codecs
import ctypes
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import LlamaGrammar

from localai_app.engine.templates import ChatTemplate

# Prompt tokens evaluated between two checks of Stop. Prefill speed here was the same for chunks of 128, 256
# and 512 tokens (394, 421, 376 tok/s on the starter model), and 256 keeps Stop within about half a second.
PREFILL_CHUNK = 256
# How far below the largest logit the likeliest tokens are looked for, narrowest first, before the whole vocabulary.
# In a 128-token reply of the starter model the 10th likeliest token lay a median 4 (at most 14) below the peak and
# the 100th 8 (at most 17); 8 took in a median of 104 tokens, 16 a median of 8,500, which then cost 0.5 ms a token
# to sort through.
LIKELY_MARGINS = (8.0, 16.0)
# While the largest logit lies within this of 0, the exp of every logit and the sum of a whole vocabulary's fit a
# float32 (up to e^88; e^70 times 262k tokens is e^82.5) and neither underflows to 0 (down to e^-87), so log-sum-exp
# skips shifting the logits by their peak: one pass over the vocabulary fewer per token.
UNSHIFTED_EXP_LIMIT = 70.0
# Positions whose logits one scoring decode (perplexity) asks for. Each row is a vocabulary of floats, 1 MiB on the
# starter's 262k tokens, held twice (the graph's result and the output buffer, which llama.cpp keeps at the largest
# size ever asked): the starter engine's peak RAM grew by 73 MB with 32 rows, 139 MB with 64, 530 MB with 256.
SCORE_ROWS = 32


class RequestError(Exception):
    """The request cannot be served as asked (too long for the context, no chat template, ...)."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_logprobs: int | None = None  # None: no probabilities; 0: the chosen token's only
    json_schema: str | None = None  # the reply must be JSON following this schema (OpenAI's response_format)
    # llama-server's ignore_eos: a benchmark gets exactly max_tokens. llama-server bans end-of-generation tokens;
    # here one that is sampled is counted (its text is empty) and generation goes on, since banning it through a
    # llama-cpp-python logits processor copies the whole vocabulary's logits at every token and would slow the
    # very speed being measured.
    ignore_eos: bool = False
    # The end-of-generation token, when sampled, is reported too, with its probabilities (given top_logprobs), as
    # llama-server's /completion does: step mode shows how likely the model was to stop there.
    include_end: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    id: int  # the token's id in the vocabulary, as llama.cpp's server reports it beside OpenAI's fields
    token: str  # a token holding part of a UTF-8 character shows U+FFFD here...
    token_bytes: bytes  # ...and its exact bytes here, as OpenAI's `bytes` field carries them
    logprob: float
    alternatives: list[TokenLogprob] = field(default_factory=list)


@dataclass(frozen=True)
class TextPiece:
    """Text ready to send: whole UTF-8 characters, with stop strings already removed."""

    text: str
    logprobs: list[TokenLogprob]


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop", "length" or "cancelled"
    prompt_tokens: int
    completion_tokens: int
    prompt_ms: float
    generation_ms: float
    ended: bool = False  # the model sampled its end-of-generation token (not a stop string, not the length limit)

    @property
    def tokens_per_second(self) -> float:
        # Decode speed: the first token comes from the prompt pass, each later one from one decode step.
        if self.completion_tokens < 2 or self.generation_ms <= 0:
            return 0.0
        return (self.completion_tokens - 1) / (self.generation_ms / 1000)


@dataclass(frozen=True)
class ModelDescription:
    id: str
    path: str
    context_length: int
    training_context_length: int
    has_chat_template: bool
    vocabulary_size: int
    makes_embeddings: bool  # an embedding model (its header names a pooling): vectors, not text


class Runner:
    def __init__(
        self,
        model_path: Path,
        *,
        context_length: int,
        threads: int | None,
        gpu_layers: int,
        model_id: str | None = None,
        embeddings: bool = False,
        vocab_only: bool = False,
    ) -> None:
        """`model_id` names the model in API replies (the app's library name); the file name by default.
        `embeddings`: an embedding model, loaded to make vectors (/v1/embeddings) instead of text.
        `vocab_only`: only the tokenizer, in a fraction of a second and of the memory (the tokenizer playground's
        second model); it tokenizes and applies its template but cannot generate."""
        self.model_path = model_path
        self.vocab_only = vocab_only
        self.llama = llama_cpp.Llama(
            vocab_only=vocab_only,
            model_path=str(model_path),
            n_ctx=context_length,
            n_threads=threads,
            n_gpu_layers=gpu_layers,
            logits_all=False,
            embedding=embeddings,
            # verbose keeps llama.cpp's own log lines on stderr, where the supervisor classifies failures.
            verbose=True,
        )
        self._lock = threading.Lock()
        self._vocab = self.llama._model.vocab
        self._n_vocab = self.llama.n_vocab()
        self._scratch = np.empty(self._n_vocab, dtype=np.float32)  # reused by every probability: no allocation
        self._pieces: dict[tuple[int, bool], bytes] = {}  # see piece()
        metadata = self.llama.metadata
        template_source = metadata.get("tokenizer.chat_template")
        self.chat_template = (
            ChatTemplate(
                template_source,
                bos_token=self._token_text(self.llama.token_bos()),
                eos_token=self._token_text(self.llama.token_eos()),
            )
            if template_source
            else None
        )
        architecture = metadata.get("general.architecture", "")
        self.description = ModelDescription(
            id=model_id or model_path.name,
            path=str(model_path),
            context_length=self.llama.n_ctx(),
            training_context_length=int(metadata.get(f"{architecture}.context_length", 0) or 0),
            has_chat_template=self.chat_template is not None,
            vocabulary_size=self._n_vocab,
            makes_embeddings=embeddings,
        )

    def _token_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    def piece(self, token: int, *, special: bool) -> bytes:
        """One token's bytes. `special`: control tokens as their text (``<start_of_turn>``), not as nothing.

        Not `Llama.detokenize`: its 32-byte buffer silently cuts longer tokens (runs of spaces, code), which would
        break a detokenize round trip. Kept once asked: a vocabulary does not change, and the token view asks for
        the same likely alternatives at token after token.
        """
        known = self._pieces.get((token, special))
        if known is not None:
            return known
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            length = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, special)
            if length >= 0:
                self._pieces[token, special] = piece = buffer.raw[:length]
                return piece
            size = -length  # too small: llama.cpp says how much it needs

    def check_ids(self, tokens: list[int]) -> None:
        """llama.cpp reads out of bounds for an id outside the vocabulary, so each is checked first."""
        for token in tokens:
            if not 0 <= token < self._n_vocab:
                raise RequestError(f"token id {token} is not in this model's vocabulary (0 to {self._n_vocab - 1})")

    def detokenize(self, tokens: list[int]) -> bytes:
        """Token ids back to bytes, special tokens as their text, as llama.cpp's server's /detokenize does."""
        self.check_ids(tokens)
        return b"".join(self.piece(token, special=True) for token in tokens)

    def chat_prompt(self, messages: list[dict[str, str]], *, continue_final: bool = False) -> str:
        """The model's template applied to `messages`. With `continue_final`, the prompt ends inside the last
        (assistant) message instead of after it, so the reply goes on where that message stopped: the template
        is rendered whole and cut at the end of that message's text, as transformers' continue_final_message."""
        if self.chat_template is None:
            raise RequestError(
                f"{self.description.id} has no chat template (it is likely a base model); "
                "use /v1/completions for text completion instead"
            )
        if not continue_final:
            return self.chat_template.render(messages)
        final = messages[-1]["content"]
        if messages[-1]["role"] != "assistant" or not final.strip():
            raise RequestError("continue_final_message needs a last message from the assistant with text in it")
        rendered = self.chat_template.render(messages, add_generation_prompt=False)
        end = rendered.rfind(final.rstrip())
        if end < 0:
            raise RequestError("this model's chat template changes the last message, so it cannot be continued")
        return rendered[: end + len(final.rstrip())]

    def tokenize(self, text: str, *, rendered_chat: bool) -> list[int]:
        # A rendered chat prompt carries BOS and its special tokens as text; plain text gets BOS added and its
        # look-alike special tokens kept as literal text, so user input cannot forge turn markers.
        return self.tokenize_as(text, add_special=not rendered_chat, parse_special=rendered_chat)

    def tokenize_as(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        """llama.cpp's own switches: `add_special` adds BOS (and EOS where the model wants it); `parse_special`
        reads ``<start_of_turn>`` as the special token rather than as the characters."""
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)

    def check(self, prompt_tokens: list[int], sampling: Sampling) -> LlamaGrammar | None:
        """Refuse what cannot be served before anything streams; the grammar `sampling` asks for, compiled."""
        self._refuse_if_vocab_only()
        self._refuse_if_embedding_model()
        context = self.llama.n_ctx()
        if len(prompt_tokens) >= context:
            raise RequestError(
                f"the prompt is {len(prompt_tokens)} tokens, more than the {context}-token context; shorten it"
            )
        if sampling.json_schema is None:
            return None
        try:
            return LlamaGrammar.from_json_schema(sampling.json_schema, verbose=False)
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise RequestError(f"this JSON schema cannot be turned into a grammar: {error}") from None

    def _refuse_if_embedding_model(self) -> None:
        if self.description.makes_embeddings:
            raise RequestError(
                f"{self.description.id} is an embedding model: it makes vectors (/v1/embeddings), not text"
            )

    def _refuse_if_vocab_only(self) -> None:
        # llama.cpp has no weights to run: decoding would read tensors that were never loaded.
        if self.vocab_only:
            raise RequestError(f"{self.description.id} was loaded for its vocabulary only: it tokenizes, nothing more")

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Unit-length vectors for `texts` (as OpenAI's are), and how many tokens they took."""
        self._refuse_if_vocab_only()
        if not self.description.makes_embeddings:
            raise RequestError(
                f"{self.description.id} makes text, not embeddings: load an embedding model to use /v1/embeddings"
            )
        limit = min(self.llama.n_ctx(), self.llama.n_batch)
        for index, text in enumerate(texts):
            length = len(self.tokenize(text, rendered_chat=False))
            if length > limit:
                raise RequestError(f"input {index} is {length} tokens; this model embeds at most {limit} at once")
        with self._lock:
            vectors, tokens = self.llama.embed(texts, normalize=True, truncate=False, return_count=True)
        return vectors, tokens

    def token_logprobs(self, tokens: list[int], predict_from: int, cancel: threading.Event) -> list[float] | None:
        """log P(tokens[i] | tokens[:i]) for each i from `predict_from` to the end, the window evaluated from an
        empty cache: one window of llama.cpp's perplexity tool (core/quality.py gives the method). None: cancelled.

        The model stays loaded as for chat (never with logits_all, which slows every generation): this one batch
        asks llama.cpp for the logits of the positions it scores, SCORE_ROWS at a time.
        """
        self._refuse_if_vocab_only()
        self._refuse_if_embedding_model()
        self.check_ids(tokens)
        context = self.llama.n_ctx()
        if len(tokens) > context:
            raise RequestError(f"the window is {len(tokens)} tokens, more than the {context}-token context")
        if not 1 <= predict_from < len(tokens):
            raise RequestError(f"predict_from must be between 1 and {len(tokens) - 1} for {len(tokens)} tokens")
        llama = self.llama
        batch = llama_cpp.llama_batch_init(llama.n_batch, 0, 1)
        with self._lock:
            # What generation had cached is overwritten: the next prompt is evaluated afresh.
            llama_cpp.llama_memory_clear(llama._ctx.memory, True)
            llama.n_tokens = 0
            try:
                return self._score_locked(batch, tokens, predict_from, cancel)
            finally:
                llama_cpp.llama_memory_clear(llama._ctx.memory, True)
                llama_cpp.llama_batch_free(batch)

    def _score_locked(
        self, batch: llama_cpp.llama_batch, tokens: list[int], predict_from: int, cancel: threading.Event
    ) -> list[float] | None:
        first_read = predict_from - 1  # the position whose logits predict tokens[predict_from]
        logprobs: list[float] = []
        position = 0
        # The last token's logits would predict past the window, so it is never evaluated (nothing before it
        # depends on it).
        while position < len(tokens) - 1:
            if cancel.is_set():
                return None
            reading = position >= first_read
            end = min(len(tokens) - 1, position + (SCORE_ROWS if reading else self.llama.n_batch))
            if not reading:
                end = min(end, first_read)
            batch.n_tokens = end - position
            for index, token in enumerate(tokens[position:end]):
                batch.token[index] = token
                batch.pos[index] = position + index  # type: ignore[call-overload]  # llama-cpp-python types pos as 2-D
                batch.n_seq_id[index] = 1
                batch.seq_id[index][0] = 0
                batch.logits[index] = reading
            status = llama_cpp.llama_decode(self.llama._ctx.ctx, batch)
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status}")
            if reading:
                pointer = llama_cpp.llama_get_logits(self.llama._ctx.ctx)
                rows = np.ctypeslib.as_array(
                    ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(end - position, self._n_vocab)
                )
                for row, following in zip(rows, tokens[position + 1 : end + 1], strict=True):
                    logprobs.append(float(row[following]) - _log_total(row, float(row.max()), self._scratch))
            position = end
        return logprobs

    def generate(
        self,
        prompt_tokens: list[int],
        sampling: Sampling,
        cancel: threading.Event,
        grammar: LlamaGrammar | None = None,
    ) -> Iterator[TextPiece | Finished]:
        """Stream text for `prompt_tokens` (passed through `check` first). One generation at a time: a second
        caller waits for the first."""
        max_tokens = min(sampling.max_tokens, self.llama.n_ctx() - len(prompt_tokens))
        with self._lock:
            yield from self._generate_locked(prompt_tokens, sampling, max_tokens, cancel, grammar)

    def _generate_locked(
        self,
        prompt_tokens: list[int],
        sampling: Sampling,
        max_tokens: int,
        cancel: threading.Event,
        grammar: LlamaGrammar | None,
    ) -> Iterator[TextPiece | Finished]:
        self.llama.set_seed(sampling.seed if sampling.seed is not None else random.randrange(2**31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = _StopMatcher(sampling.stop)
        pending_logprobs: list[TokenLogprob] = []
        started = time.perf_counter()
        first_token_at = last_token_at = 0.0
        completion_tokens = 0
        finish_reason, ended = "length", False
        if not self._prefill(prompt_tokens, cancel):
            yield Finished("cancelled", len(prompt_tokens), 0, (time.perf_counter() - started) * 1000, 0.0)
            return
        tokens = self.llama.generate(
            prompt_tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            grammar=grammar,
        )
        try:
            for token in tokens:
                last_token_at = time.perf_counter()
                if not first_token_at:
                    first_token_at = last_token_at
                if not sampling.ignore_eos and llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish_reason, ended = "stop", True
                    if sampling.include_end and sampling.top_logprobs is not None:
                        yield TextPiece("", [*pending_logprobs, self._logprob_of(token, b"", sampling.top_logprobs)])
                    break
                completion_tokens += 1
                piece = self.piece(token, special=False)
                if sampling.top_logprobs is not None:
                    pending_logprobs.append(self._logprob_of(token, piece, sampling.top_logprobs))
                text, stopped = stops.feed(decoder.decode(piece))
                if text or stopped:
                    yield TextPiece(text, pending_logprobs)
                    pending_logprobs = []
                if stopped:
                    finish_reason = "stop"
                    break
                if cancel.is_set():
                    finish_reason = "cancelled"
                    break
                if completion_tokens >= max_tokens:
                    break
        finally:
            tokens.close()
        if finish_reason != "stop":
            tail = stops.flush() + decoder.decode(b"", final=True)
            if tail or pending_logprobs:
                yield TextPiece(tail, pending_logprobs)
        yield Finished(
            finish_reason=finish_reason,
            prompt_tokens=len(prompt_tokens),
            completion_tokens=completion_tokens,
            prompt_ms=((first_token_at or time.perf_counter()) - started) * 1000,
            generation_ms=(last_token_at - first_token_at) * 1000 if first_token_at else 0.0,
            ended=ended,
        )

    def _prefill(self, prompt_tokens: list[int], cancel: threading.Event) -> bool:
        """Evaluate the prompt in chunks, checking Stop between them. False: cancelled.

        llama-cpp-python's generate() evaluates the whole prompt in one call that nothing can interrupt, so a long
        prompt would keep Stop waiting for many seconds. Evaluated here, the prompt is then "already cached" for
        generate(), which samples the first token straight from these logits, with no extra decode step.
        """
        llama = self.llama
        cached = 0
        for have, want in zip(llama.input_ids[: llama.n_tokens], prompt_tokens, strict=False):
            if have != want:
                break
            cached += 1
        if cached == len(prompt_tokens) and (llama.n_tokens != cached or llama._requires_eval):
            cached -= 1  # the prompt is cached but the current logits belong to a later position: redo the last
        if cached < llama.n_tokens and not llama._ctx.kv_cache_seq_rm(-1, cached, -1):
            # This model's cache cannot drop just a tail (recurrent models); eval() from position 0 clears it all.
            cached = 0
        llama.n_tokens = cached
        for start in range(cached, len(prompt_tokens), PREFILL_CHUNK):
            if cancel.is_set():
                return False
            llama.eval(prompt_tokens[start : start + PREFILL_CHUNK])
        return not cancel.is_set()

    def _logprob_of(self, token: int, piece: bytes, top: int) -> TokenLogprob:
        """Log-probabilities of the distribution `token` was sampled from (the last decoded position).

        A plain softmax and argpartition over the whole 262k vocabulary cost 3.5 ms per token here, a quarter
        of a decode step on the starter model; this costs under half of that (benchmarks/probs_overhead.py).
        """
        pointer = self.llama._ctx.get_logits_ith(-1)
        logits = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self._n_vocab,))
        peak = float(logits.max())
        log_total = _log_total(logits, peak, self._scratch)
        alternatives: list[TokenLogprob] = []
        if top > 0:
            for index in _likeliest(logits, peak, top):
                alternative = int(index)
                alternatives.append(
                    _token_logprob(
                        alternative, self.piece(alternative, special=True), float(logits[alternative]) - log_total
                    )
                )
        return _token_logprob(token, piece, float(logits[token]) - log_total, alternatives)


def _log_total(logits: np.ndarray, peak: float, scratch: np.ndarray) -> float:
    """log Σ exp(logits): what a logit minus it is the log-probability of (`peak` is their largest; `scratch`, a
    reused buffer of their size). numpy sums float32 pairwise: off by under 1e-7 from a float64 sum over 262k terms,
    at half its cost."""
    if abs(peak) < UNSHIFTED_EXP_LIMIT:  # every exp, and their sum, fits a float32 as it is: no shifting pass
        return float(np.log(np.exp(logits, out=scratch).sum()))
    np.subtract(logits, peak, out=scratch)
    return peak + float(np.log(np.exp(scratch, out=scratch).sum()))


def _likeliest(logits: np.ndarray, peak: float, top: int) -> np.ndarray:
    """Ids of the `top` largest logits, largest first. Most of a vocabulary lies far below its peak, so the search
    starts among the logits within a narrow margin of it and only widens when too few are there."""
    for margin in LIKELY_MARGINS:
        candidates = np.flatnonzero(logits >= peak - margin)
        if len(candidates) >= top:
            break
    else:
        candidates = np.arange(len(logits))
    values = logits[candidates]
    if len(candidates) > top:
        chosen = np.argpartition(values, -top)[-top:]
        candidates, values = candidates[chosen], values[chosen]
    return candidates[np.argsort(-values, kind="stable")]


def _token_logprob(
    token: int, piece: bytes, logprob: float, alternatives: list[TokenLogprob] | None = None
) -> TokenLogprob:
    return TokenLogprob(token, piece.decode("utf-8", errors="replace"), piece, logprob, alternatives or [])


class _StopMatcher:
    """Holds back text that may be the start of a stop string, so a stop string is never half sent."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        buffer = self._held + text
        hits = [index for index in (buffer.find(stop) for stop in self._stops) if index >= 0]
        if hits:
            self._held = ""
            return buffer[: min(hits)], True
        keep = max((_overlap(buffer, stop) for stop in self._stops), default=0)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of `text` that is a beginning of `stop`."""
    for length in range(min(len(text), len(stop) - 1), 0, -1):
        if stop.startswith(text[-length:]):
            return length
    return 0
