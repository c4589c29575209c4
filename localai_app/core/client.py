"""The one module that speaks the engine protocol (OpenAI-compatible HTTP + SSE).

It drives the app's own engine process and, unchanged, any remote OpenAI-compatible server.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Literal, overload

import httpx
from httpx_sse import SSEError, connect_sse

from localai_app.core.errors import (
    ConnectionLostError,
    EngineError,
    RouteUnavailableError,
    TokenCountUnavailableError,
)
from localai_app.core.replies import Delta, ReplyStats, ReplyStream, SamplingOptions, TokenChoice, TokenProbability
from localai_app.core.sampling import Continuation


class EngineClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 600.0,
        model: str | None = None,
        label: str = "the engine",
    ) -> None:
        """`model`: the id requests name (a remote server may offer several; our engine has one and ignores it).
        `label`: who answers, as error sentences name it ("the engine", "the server gpu-box")."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Generation can pause for minutes on a long prompt; only connecting must be quick.
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=self._timeout, trust_env=False)
        self._model = model
        self._label = label
        self._reading: set[socket.socket] = set()  # sockets of replies being read now, for interrupt()
        self._reading_lock = threading.Lock()

    def interrupt(self) -> None:
        """Thread-safe: end every reply being read now, even one still waiting for its first token.

        A reader blocked in a long prompt pass would otherwise only see Stop when the first token arrives. Shutting
        the socket down makes its read return at once (as a ConnectionLostError) and the server, seeing the client
        gone, cancels the generation.
        """
        with self._reading_lock:
            for connection in self._reading:
                with contextlib.suppress(OSError):  # already closed: nothing left to interrupt
                    connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._http.close()

    def health(self) -> dict[str, Any]:
        return self._get_json("/health")

    def models(self) -> list[dict[str, Any]]:
        data = self._get_json("/v1/models").get("data")
        return [entry for entry in data if isinstance(entry, dict)] if isinstance(data, list) else []

    def count_tokens(self, prompt: str | list[dict[str, str]]) -> tuple[int, int]:
        """(tokens in the prompt as the model reads it, the loaded context length)."""
        body: dict[str, Any] = {"prompt": prompt} if isinstance(prompt, str) else {"messages": prompt}
        # Our engine's extension, which other servers do not have.
        missing = TokenCountUnavailableError(
            f"{_capital(self._label)} cannot count tokens (it has no /v1/tokenize).", kind="no_tokenizer"
        )
        document = self._post_json("/v1/tokenize", self._named(body), missing)
        return int(document["tokens"]), int(document["context_length"])

    # The glass box: llama.cpp server's routes, which our engine serves too; other servers may lack them.

    @overload
    def tokenize(
        self, text: str, *, with_pieces: Literal[True] = True, add_special: bool = ..., parse_special: bool = ...
    ) -> list[tuple[int, str | bytes]]: ...

    @overload
    def tokenize(
        self, text: str, *, with_pieces: Literal[False], add_special: bool = ..., parse_special: bool = ...
    ) -> list[int]: ...

    def tokenize(
        self, text: str, *, with_pieces: bool = True, add_special: bool = False, parse_special: bool = True
    ) -> list[tuple[int, str | bytes]] | list[int]:
        """`text`'s token ids, each with its text (bytes where it holds part of a UTF-8 character) when
        `with_pieces`. The defaults are llama-server's: no BOS added, special tokens written out are read as such."""
        body = {"content": text, "add_special": add_special, "parse_special": parse_special}
        tokens = self._glass_box("/tokenize", {**body, "with_pieces": with_pieces}, "its tokens cannot be shown")
        if not with_pieces:
            return [int(token) for token in tokens["tokens"]]
        return [(int(entry["id"]), _piece(entry["piece"])) for entry in tokens["tokens"]]

    def detokenize(self, ids: list[int]) -> str:
        document = self._glass_box("/detokenize", {"tokens": ids}, "its token ids cannot be turned back into text")
        return str(document["content"])

    def apply_template(self, messages: list[dict[str, str]]) -> str:
        """The exact text the model is fed for a chat with `messages`, after its chat template."""
        body: dict[str, Any] = {"messages": messages}
        if messages and messages[-1]["role"] == "assistant":  # as stream_chat sends it: a reply to go on with
            body["continue_final_message"] = True
        document = self._glass_box("/apply-template", body, "the prompt its model reads cannot be shown")
        return str(document["prompt"])

    def token_logprobs(self, tokens: list[int], predict_from: int) -> list[float]:
        """The log-probability of each of `tokens` from index `predict_from` on, given the tokens before it, the
        window evaluated from an empty cache: one window of a perplexity (core/quality.py). Our engine's
        /v1/perplexity, which other servers do not have (RouteUnavailableError)."""
        missing = RouteUnavailableError(
            f"{_capital(self._label)} does not offer /v1/perplexity, so it cannot score text.", kind="no_route"
        )
        body = self._named({"tokens": tokens, "predict_from": predict_from})
        document = self._post_json("/v1/perplexity", body, missing)
        return [float(logprob) for logprob in document["token_logprobs"]]

    def next_tokens(
        self, prompt: str | list[int], sampling: SamplingOptions, *, count: int, alternatives: int
    ) -> Continuation:
        """Up to `count` tokens after `prompt` (text, or token ids to go on from exactly), each with the
        `alternatives` likeliest tokens at its position from the raw logits: llama-server's native /completion."""
        consequence = "the next token's probabilities cannot be shown"
        body = {
            "prompt": prompt,
            "n_predict": count,
            "n_probs": alternatives,
            "post_sampling_probs": False,
            "return_tokens": True,
            **_sampling_fields(replace(sampling, max_tokens=count)),
        }
        document = self._glass_box("/completion", body, consequence)
        if alternatives and "completion_probabilities" not in document:  # an older llama-server's format
            raise RouteUnavailableError(
                f"{_capital(self._label)} answers /completion without token probabilities, so {consequence}.",
                kind="no_route",
            )
        # The same entries as chat's logprobs content: id, token, logprob, bytes, top_logprobs.
        tokens = _probabilities({"content": document.get("completion_probabilities")})
        ids = [int(token) for token in document.get("tokens") or []]
        return Continuation(str(document.get("content", "")), ids, tokens, ended=document.get("stop_type") == "eos")

    def _glass_box(self, path: str, body: dict[str, Any], consequence: str) -> dict[str, Any]:
        missing = RouteUnavailableError(
            f"{_capital(self._label)} does not offer {path}, so {consequence}.", kind="no_route"
        )
        return self._post_json(path, body, missing)

    def _post_json(self, path: str, body: dict[str, Any], missing: RouteUnavailableError) -> dict[str, Any]:
        """POST to an optional route; `missing` is raised where the server does not have it."""
        try:
            response = self._http.post(path, json=body)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None
        if response.status_code in (404, 405):
            raise missing
        return self._document(response, path)

    def _get_json(self, path: str) -> dict[str, Any]:
        try:
            response = self._http.get(path)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None
        if response.status_code == 404:
            raise EngineError(
                f"{_capital(self._label)} at {self._where} has no {response.url.path} (HTTP 404): check that the "
                "address is the server's OpenAI-compatible API.",
                kind="not_found",
            )
        return self._document(response, path)

    def _document(self, response: httpx.Response, path: str) -> dict[str, Any]:
        """The JSON object a successful response carries; one sentence for any error status or other body."""
        _raise_for_status(response, self._label)
        try:
            document = response.json()
        except ValueError:  # a web page, say: the address points at something else
            document = None
        if not isinstance(document, dict):
            raise EngineError(
                f"{_capital(self._label)} at {self._where} did not answer like an OpenAI-compatible server "
                f"({path} is not JSON): check the address.",
                kind="protocol",
            )
        return document

    def _named(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"model": self._model, **body} if self._model is not None else body

    @property
    def _where(self) -> str:
        return self._http.base_url.netloc.decode("ascii")

    def _unreachable(self, error: httpx.HTTPError) -> ConnectionLostError:
        """One sentence for a request that could not be made or finished, from the OS error beneath httpx's."""
        label, where, host = self._label, self._where, self._http.base_url.host
        causes = list(_causes(error))
        if isinstance(error, httpx.TimeoutException):
            seconds = self._timeout.connect if isinstance(error, httpx.ConnectTimeout) else self._timeout.read
            return ConnectionLostError(
                f"{_capital(label)} at {where} did not answer within {seconds:g} seconds.", kind="timeout"
            )
        if any(isinstance(cause, socket.gaierror) for cause in causes):
            return ConnectionLostError(
                f"The host name {host} cannot be found: check {label}'s address and this computer's network.",
                kind="dns",
            )
        untrusted = next((cause for cause in causes if isinstance(cause, ssl.SSLCertVerificationError)), None)
        if untrusted is not None:
            return ConnectionLostError(
                f"The TLS certificate of {where} is not trusted ({untrusted.verify_message}), so {label} was not "
                "contacted.",
                kind="tls",
            )
        if any(isinstance(cause, ssl.SSLError) for cause in causes):
            return ConnectionLostError(
                f"The secure (https) connection to {where} failed: {label} may not speak https on that port "
                "(try http://).",
                kind="tls",
            )
        if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
            return ConnectionLostError(
                f"The connection to {where} was refused: {label} is not running there, or listens on another port.",
                kind="refused",
            )
        if isinstance(error, httpx.ConnectError):
            return ConnectionLostError(f"Cannot connect to {label} at {where} ({error}).", kind="connection")
        return ConnectionLostError(f"The connection to {label} was lost.", kind="connection")

    def stream(self, prompt: str | list[dict[str, str]], sampling: SamplingOptions) -> ReplyStream:
        """A string prompt is text completion, a message list is chat."""
        if isinstance(prompt, str):
            return self.stream_completion(prompt, sampling)
        return self.stream_chat(prompt, sampling)

    def stream_completion(self, prompt: str, sampling: SamplingOptions) -> ReplyStream:
        body: dict[str, Any] = {"prompt": prompt, **_sampling_fields(sampling)}
        if sampling.top_logprobs is not None:
            body["logprobs"] = sampling.top_logprobs
        return self._stream("/v1/completions", body, chat=False)

    def stream_chat(self, messages: list[dict[str, str]], sampling: SamplingOptions) -> ReplyStream:
        body: dict[str, Any] = {"messages": messages, **_sampling_fields(sampling)}
        if messages and messages[-1]["role"] == "assistant":  # a reply to go on with, not one to answer
            body["continue_final_message"] = True
        if sampling.top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = sampling.top_logprobs
        return self._stream("/v1/chat/completions", body, chat=True)

    def _stream(self, path: str, body: dict[str, Any], *, chat: bool) -> ReplyStream:
        """Yield text deltas, then one ReplyStats. Closing the iterator early stops generation on the server."""
        started = time.perf_counter()
        first_text_at: float | None = None
        completion_tokens = 0
        finished = False
        try:
            with (
                connect_sse(self._http, "POST", path, json=self._named({**body, "stream": True})) as source,
                self._registered(source.response),
            ):
                _raise_for_status(source.response, self._label)
                for event in source.iter_sse():
                    if event.data == "[DONE]":
                        break
                    chunk = json.loads(event.data)
                    if "error" in chunk:
                        raise EngineError(str(chunk["error"].get("message", "the engine failed")), kind="server")
                    choice = chunk["choices"][0] if chunk.get("choices") else {}
                    text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                    probabilities = _probabilities(choice.get("logprobs"))
                    if text or probabilities:
                        if first_text_at is None:
                            first_text_at = time.perf_counter()
                        completion_tokens += max(1, len(probabilities))
                        yield Delta(text or "", probabilities)
                    if choice.get("finish_reason"):
                        finished = True
                        yield _stats(chunk, choice["finish_reason"], started, first_text_at, completion_tokens)
        except httpx.TransportError as error:
            raise self._unreachable(error) from None
        except SSEError:  # answered, but not with server-sent events
            raise ConnectionLostError(
                f"{_capital(self._label)} did not stream its reply (not server-sent events).", kind="protocol"
            ) from None
        if not finished:
            # A body that simply ends (HTTP/1.0, or a proxy that closes) is a cut-off reply, not a finished one.
            raise ConnectionLostError(
                f"The connection to {self._label} closed before the reply finished.", kind="connection"
            )

    @contextlib.contextmanager
    def _registered(self, response: httpx.Response) -> Iterator[None]:
        stream = response.extensions.get("network_stream")
        connection = stream.get_extra_info("socket") if stream is not None else None
        if connection is None:
            yield
            return
        with self._reading_lock:
            self._reading.add(connection)
        try:
            yield
        finally:
            with self._reading_lock:
                self._reading.discard(connection)


def _sampling_fields(sampling: SamplingOptions) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "min_p": sampling.min_p,
        "repeat_penalty": sampling.repeat_penalty,
    }
    if sampling.seed is not None:
        fields["seed"] = sampling.seed
    return fields


def _probabilities(logprobs: Any) -> list[TokenProbability]:
    if not logprobs:
        return []
    if "content" in logprobs:
        # Chat's format, which completions from our engine and llama-server also carry, with token ids.
        return [
            TokenProbability(
                entry["token"],
                float(entry["logprob"]),
                [_choice(alt) for alt in entry.get("top_logprobs") or []],
                _id(entry),
            )
            for entry in logprobs["content"] or []
        ]
    # OpenAI's legacy completion format: no ids, alternatives keyed by their text.
    tokens = logprobs.get("tokens", [])
    tops = logprobs.get("top_logprobs") or [{}] * len(tokens)
    return [
        TokenProbability(token, float(logprob), [TokenChoice(alt, float(value)) for alt, value in (top or {}).items()])
        for token, logprob, top in zip(tokens, logprobs.get("token_logprobs", []), tops, strict=True)
    ]


def _choice(entry: dict[str, Any]) -> TokenChoice:
    return TokenChoice(entry["token"], float(entry["logprob"]), _id(entry))


def _id(entry: dict[str, Any]) -> int | None:
    token = entry.get("id")
    return token if isinstance(token, int) and not isinstance(token, bool) else None


def _piece(piece: Any) -> str | bytes:
    """llama-server writes a token that is not whole UTF-8 as a list of its byte values."""
    return bytes(piece) if isinstance(piece, list) else str(piece)


def _stats(
    chunk: dict[str, Any], finish_reason: str, started: float, first_text_at: float | None, counted: int
) -> ReplyStats:
    now = time.perf_counter()
    usage = chunk.get("usage") or {}
    timings = chunk.get("timings") or {}
    completion_tokens = int(usage.get("completion_tokens", counted))
    tokens_per_second = float(timings.get("predicted_per_second") or 0.0)
    if not tokens_per_second and first_text_at is not None and completion_tokens > 1 and now > first_text_at:
        # A server without llama.cpp's timings: measure from the client side.
        tokens_per_second = (completion_tokens - 1) / (now - first_text_at)
    return ReplyStats(
        ttft_ms=((first_text_at or now) - started) * 1000,
        completion_tokens=completion_tokens,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        tokens_per_second=tokens_per_second,
        finish_reason=finish_reason,
        total_ms=(now - started) * 1000,
    )


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what it was raised from: httpx wraps httpcore's error, which wraps the OS's."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:  # a chain can loop back on itself
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _raise_for_status(response: httpx.Response, label: str) -> None:
    status = response.status_code
    if status < 400:
        return
    if status in (401, 403):
        raise EngineError(
            f"{_capital(label)} refused the request (HTTP {status}): the API key is missing or wrong.", kind="auth"
        )
    try:
        response.read()
        message = str(response.json()["error"]["message"]).rstrip(".")
    except (ValueError, KeyError, TypeError, httpx.HTTPError):
        message = f"HTTP {status}"
    # 404: a remote server that no longer has the model asked for (or lacks the route).
    raise EngineError(
        f"{_capital(label)} refused the request: {message}.", kind="not_found" if status == 404 else "request"
    )
