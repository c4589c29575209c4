"""The engine's HTTP API: the OpenAI routes the app and other tools use, served by Starlette.

Generation runs on its own thread and hands pieces to the event loop one at a time, so a slow client never
blocks llama.cpp and a client that goes away stops its generation at the next token.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import psutil
from llama_cpp.llama_grammar import LlamaGrammar
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from localai_app.engine.protocol import (
    ApplyTemplateRequest,
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingsRequest,
    NativeCompletionRequest,
    TokenizeRequest,
    TokenizeTextRequest,
    TokenLogprobsRequest,
)
from localai_app.engine.runner import Finished, RequestError, Runner, Sampling, TextPiece, TokenLogprob
from localai_app.engine.templates import TemplateError
from localai_app.engine.turns import APP, QueueFullError, Ticket, Turns

MAX_BODY_BYTES = 16 * 1024 * 1024
_END = object()
_Result = TypeVar("_Result")


def error_response(
    status: int, message: str, kind: str = "invalid_request_error", headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in OpenAI's format, which its clients turn into typed exceptions."""
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": status}}, status_code=status, headers=headers
    )


class BearerAuth:
    """Every route needs the token: the engine listens on loopback, where any local program can reach it."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await error_response(401, "missing or wrong API key", "authentication_error")(scope, receive, send)
                return
        await self.app(scope, receive, send)


class EngineAPI:
    """The routes, for one listener: the app's own (priority APP) or the public API (priority API)."""

    def __init__(self, runner: Runner, turns: Turns, priority: int) -> None:
        self.runner = runner
        self.turns = turns
        self.priority = priority

    def routes(self) -> list[Route]:
        return [
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/tokenize", self.tokenize, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            # The app's own: the log-probability of each token of a window, for perplexity (core/quality.py).
            Route("/v1/perplexity", self.perplexity, methods=["POST"]),
            # The glass box's routes, named and shaped as llama.cpp's llama-server has them, so the app's views
            # work the same against a remote llama-server.
            Route("/tokenize", self.tokenize_text, methods=["POST"]),
            Route("/detokenize", self.detokenize, methods=["POST"]),
            Route("/apply-template", self.apply_template, methods=["POST"]),
            Route("/completion", self.native_completion, methods=["POST"]),
        ]

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "model": self.runner.description.id, "peak_resident_bytes": peak_resident_bytes()}
        )

    async def models(self, request: Request) -> Response:
        description = self.runner.description
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": description.id,
                        "object": "model",
                        "created": 0,
                        "owned_by": "localai-app",
                        "meta": {
                            "context_length": description.context_length,
                            "training_context_length": description.training_context_length,
                            "has_chat_template": description.has_chat_template,
                            "vocabulary_size": description.vocabulary_size,
                            "makes_embeddings": description.makes_embeddings,
                        },
                    }
                ],
            }
        )

    async def completions(self, request: Request) -> Response:
        body = await _parse(request, CompletionRequest)
        if isinstance(body, Response):
            return body
        return await self._respond(
            request,
            body.stream,
            lambda: self.runner.tokenize(body.prompt, rendered_chat=False),
            lambda: body.sampling(body.logprobs),
            _CompletionShape(self.runner.description.id),
        )

    async def chat_completions(self, request: Request) -> Response:
        body = await _parse(request, ChatRequest)
        if isinstance(body, Response):
            return body
        messages = [message.for_template() for message in body.messages]
        return await self._respond(
            request,
            body.stream,
            lambda: self.runner.tokenize(
                self.runner.chat_prompt(messages, continue_final=body.continue_final_message), rendered_chat=True
            ),
            lambda: body.sampling(body.wanted_logprobs()),
            _ChatShape(self.runner.description.id),
        )

    async def tokenize(self, request: Request) -> Response:
        body = await _parse(request, TokenizeRequest)
        if isinstance(body, Response):
            return body
        if (body.prompt is None) == (body.messages is None):
            return error_response(400, "give either prompt or messages")

        def count() -> dict[str, Any]:
            if body.messages is not None:
                rendered = self.runner.chat_prompt([message.for_template() for message in body.messages])
                tokens = self.runner.tokenize(rendered, rendered_chat=True)
            else:
                tokens = self.runner.tokenize(body.prompt or "", rendered_chat=False)
            return {"tokens": len(tokens), "context_length": self.runner.llama.n_ctx()}

        return await _answer_off_loop(count)

    async def tokenize_text(self, request: Request) -> Response:
        body = await _parse(request, TokenizeTextRequest)
        if isinstance(body, Response):
            return body

        def tokenize() -> dict[str, Any]:
            runner = self.runner
            ids = runner.tokenize_as(body.content, add_special=body.add_special, parse_special=body.parse_special)
            if not body.with_pieces:
                return {"tokens": ids}
            return {"tokens": [{"id": token, "piece": _piece_json(runner.piece(token, special=True))} for token in ids]}

        return await _answer_off_loop(tokenize)

    async def detokenize(self, request: Request) -> Response:
        body = await _parse(request, DetokenizeRequest)
        if isinstance(body, Response):
            return body
        # A token may hold part of a UTF-8 character; llama-server also replaces what does not decode.
        return await _answer_off_loop(
            lambda: {"content": self.runner.detokenize(body.tokens).decode("utf-8", errors="replace")}
        )

    async def apply_template(self, request: Request) -> Response:
        body = await _parse(request, ApplyTemplateRequest)
        if isinstance(body, Response):
            return body
        messages = [message.for_template() for message in body.messages]
        # The very text chat_completions tokenizes, so what the glass box shows is what the model is fed.
        return await _answer_off_loop(
            lambda: {"prompt": self.runner.chat_prompt(messages, continue_final=body.continue_final_message)}
        )

    async def native_completion(self, request: Request) -> Response:
        """llama-server's /completion, answered whole: the glass box's step mode and sampling lab."""
        body = await _parse(request, NativeCompletionRequest)
        if isinstance(body, Response):
            return body
        if body.stream:
            return error_response(400, "stream: /completion answers whole here; use /v1/completions to stream")
        prompt: str | list[int] = body.prompt

        def prompt_tokens() -> list[int]:
            if isinstance(prompt, str):  # read as llama-server reads a text prompt: BOS added, special tokens parsed
                return self.runner.tokenize_as(prompt, add_special=True, parse_special=True)
            if not prompt:
                raise RequestError("the prompt is empty: give text or at least one token id")
            self.runner.check_ids(prompt)
            return prompt

        shape = _NativeShape(self.runner.description.id, n_probs=body.n_probs, return_tokens=body.return_tokens)
        return await self._respond(request, False, prompt_tokens, body.native_sampling, shape)

    async def embeddings(self, request: Request) -> Response:
        body = await _parse(request, EmbeddingsRequest)
        if isinstance(body, Response):
            return body
        width = self.runner.llama.n_embd()
        if body.dimensions is not None and body.dimensions != width:
            return error_response(400, f"this model makes vectors of {width} dimensions only")
        result = await self._run_in_turn(request, lambda cancel: self.runner.embed(body.texts()))
        if isinstance(result, Response):
            return result
        vectors, tokens = result
        request.state.usage = (tokens, 0)
        return JSONResponse(
            {
                "object": "list",
                "model": self.runner.description.id,
                "data": [
                    {"object": "embedding", "index": index, "embedding": _encoded(vector, body.encoding_format)}
                    for index, vector in enumerate(vectors)
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def perplexity(self, request: Request) -> Response:
        body = await _parse(request, TokenLogprobsRequest)
        if isinstance(body, Response):
            return body
        logprobs = await self._run_in_turn(
            request, lambda cancel: self.runner.token_logprobs(body.tokens, body.predict_from, cancel)
        )
        if isinstance(logprobs, Response):
            return logprobs
        request.state.usage = (len(body.tokens), 0)
        return JSONResponse(
            {"model": self.runner.description.id, "predict_from": body.predict_from, "token_logprobs": logprobs}
        )

    async def _run_in_turn(
        self, request: Request, work: Callable[[threading.Event], _Result | None]
    ) -> _Result | Response:
        """`work` on a thread once the queue gives it its turn; the 429 when the queue is full, a 400 for what the
        runner refuses. A client that leaves takes its place out of the queue, and sets the event `work` is given."""
        ticket = self._admit()
        if isinstance(ticket, Response):
            return ticket
        cancel = threading.Event()

        def in_turn() -> _Result | None:
            if not self.turns.wait(ticket, cancel):
                return None
            try:
                return work(cancel)
            finally:
                self.turns.done(ticket)

        watcher = asyncio.create_task(_cancel_on_disconnect(request, cancel))
        try:
            result = await run_in_threadpool(in_turn)
        except RequestError as error:
            return error_response(400, str(error))
        finally:
            watcher.cancel()
            cancel.set()
            self.turns.withdraw(ticket)
        if result is None:  # the client left: nobody reads this
            return error_response(400, "the request was cancelled")
        return result

    def _admit(self) -> Ticket | Response:
        """A place in the generation queue, or the 429 (with Retry-After) for an API request past its limit."""
        try:
            return self.turns.admit(self.priority)
        except QueueFullError as error:
            return error_response(429, str(error), "rate_limit_error", {"Retry-After": str(error.retry_after)})

    async def _respond(
        self,
        request: Request,
        stream: bool,
        make_tokens: Callable[[], list[int]],
        make_sampling: Callable[[], Sampling],
        shape: _Shape,
    ) -> Response:
        try:
            tokens = make_tokens()
            sampling = make_sampling()
            grammar = self.runner.check(tokens, sampling)
        except (RequestError, TemplateError, ValueError) as error:
            return error_response(400, str(error))
        ticket = self._admit()
        if isinstance(ticket, Response):
            return ticket
        job = _Job(tokens, sampling, grammar, ticket)
        if stream:
            return _JobResponse(
                job,
                self.turns,
                self._sse(request, job, shape),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        watcher = asyncio.create_task(_cancel_on_disconnect(request, job.cancel))
        try:
            events = [event async for event in self._pieces(job)]
        finally:
            watcher.cancel()
            _end_job(job, self.turns)
        failure = next((event for event in events if isinstance(event, Exception)), None)
        if failure is not None:
            return error_response(500, f"generation failed: {failure}", "server_error")
        pieces = [event for event in events if not isinstance(event, Exception)]
        _note_usage(request, pieces[-1] if pieces else None)
        return JSONResponse(shape.whole(pieces))

    async def _sse(self, request: Request, job: _Job, shape: _Shape) -> AsyncIterator[bytes]:
        async for event in self._pieces(job):
            if isinstance(event, Exception):
                payload = {"error": {"message": f"generation failed: {event}", "type": "server_error"}}
                yield b"data: " + json.dumps(payload).encode() + b"\n\n"
                return
            _note_usage(request, event)
            yield b"data: " + json.dumps(shape.chunk(event)).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def _pieces(self, job: _Job) -> AsyncIterator[TextPiece | Finished | Exception]:
        """Wait for the job's turn and generate on a thread; yield its events here. Leaving early (client gone)
        cancels it, whether it is still queued or generating."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def produce() -> None:
            try:
                if not self.turns.wait(job.ticket, job.cancel):
                    return
                try:
                    for event in self.runner.generate(job.tokens, job.sampling, job.cancel, job.grammar):
                        loop.call_soon_threadsafe(queue.put_nowait, event)
                finally:
                    self.turns.done(job.ticket)
            except Exception as error:  # reported to the client as a server error, never lost
                loop.call_soon_threadsafe(queue.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        threading.Thread(target=produce, name="generation", daemon=True).start()
        try:
            while (event := await queue.get()) is not _END:
                yield event  # type: ignore[misc]
        finally:
            # Not awaited: cancellation may be what brought us here. The generation notices the flag at its next
            # token (or prompt chunk), a queued job when it next looks.
            job.cancel.set()


@dataclass
class _Job:
    tokens: list[int]
    sampling: Sampling
    grammar: LlamaGrammar | None
    ticket: Ticket
    cancel: threading.Event = field(default_factory=threading.Event)


def _end_job(job: _Job, turns: Turns) -> None:
    """However the response ended, the job gives up its place: a queue slot must never leak."""
    job.cancel.set()
    turns.withdraw(job.ticket)


class _JobResponse(StreamingResponse):
    """A stream that releases its queue place even when the client left before the body began (Starlette then
    never starts the body's generator, so its own cleanup would never run)."""

    def __init__(self, job: _Job, turns: Turns, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._job, self._turns = job, turns

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            _end_job(self._job, self._turns)


async def _cancel_on_disconnect(request: Request, cancel: threading.Event) -> None:
    """For a reply sent whole: the body is read, so the next ASGI message can only be the client leaving."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    cancel.set()


async def _answer_off_loop(work: Callable[[], dict[str, Any]]) -> Response:
    """Off the event loop: a long text or conversation takes a while to render and tokenize, and streams being
    served meanwhile must not stall."""
    try:
        return JSONResponse(await run_in_threadpool(work))
    except (RequestError, TemplateError) as error:
        return error_response(400, str(error))


def _piece_json(piece: bytes) -> str | list[int]:
    """A token's text, or its bytes where it holds part of a UTF-8 character, as llama-server's with_pieces."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return list(piece)


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


def _note_usage(request: Request, event: TextPiece | Finished | None) -> None:
    """Token counts for the request log (engine/gateway.py reads them when the response ends)."""
    if isinstance(event, Finished):
        request.state.usage = (event.prompt_tokens, event.completion_tokens)


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return error_response(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return error_response(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return error_response(400, f"{where}: {first['msg']}")


class _Shape:
    """Turns runner events into one OpenAI response format."""

    object_name = ""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"{self.prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    prefix = "cmpl"

    def envelope(self, choice: dict[str, Any], finished: Finished | None) -> dict[str, Any]:
        document: dict[str, Any] = {
            "id": self.id,
            "object": self.object_name,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if finished is not None:
            document["usage"] = {
                "prompt_tokens": finished.prompt_tokens,
                "completion_tokens": finished.completion_tokens,
                "total_tokens": finished.prompt_tokens + finished.completion_tokens,
            }
            document["timings"] = _timings(finished)
        return document

    def chunk(self, event: TextPiece | Finished) -> dict[str, Any]:
        raise NotImplementedError

    def whole(self, events: list[TextPiece | Finished]) -> dict[str, Any]:
        raise NotImplementedError


def _timings(finished: Finished) -> dict[str, float]:
    """Same names as llama.cpp's llama-server, so clients can read either."""
    return {
        "prompt_n": finished.prompt_tokens,
        "prompt_ms": finished.prompt_ms,
        "predicted_n": finished.completion_tokens,
        "predicted_ms": finished.generation_ms,
        "predicted_per_second": finished.tokens_per_second,
    }


def _finish_reason(finished: Finished) -> str:
    return "length" if finished.finish_reason == "length" else "stop"


def _split(events: list[TextPiece | Finished]) -> tuple[str, list[TokenLogprob], Finished]:
    pieces = [event for event in events if isinstance(event, TextPiece)]
    finished = next(event for event in events if isinstance(event, Finished))
    return "".join(p.text for p in pieces), [lp for p in pieces for lp in p.logprobs], finished


class _CompletionShape(_Shape):
    object_name = "text_completion"
    prefix = "cmpl"

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.offset = 0

    def logprobs(self, entries: list[TokenLogprob]) -> dict[str, Any]:
        offsets = []
        for entry in entries:
            offsets.append(self.offset)
            self.offset += len(entry.token)
        return {
            "tokens": [entry.token for entry in entries],
            "token_logprobs": [entry.logprob for entry in entries],
            "top_logprobs": [{alt.token: alt.logprob for alt in entry.alternatives} for entry in entries],
            "text_offset": offsets,
            # The legacy fields above lose ids, and alternatives whose text is the same (two partial UTF-8
            # characters both show U+FFFD) collapse into one key; llama-server's completions carry this list.
            "content": [_chat_logprob(entry) for entry in entries],
        }

    def chunk(self, event: TextPiece | Finished) -> dict[str, Any]:
        if isinstance(event, Finished):
            choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": _finish_reason(event)}
            return self.envelope(choice, event)
        logprobs = self.logprobs(event.logprobs) if event.logprobs else None
        return self.envelope({"index": 0, "text": event.text, "logprobs": logprobs, "finish_reason": None}, None)

    def whole(self, events: list[TextPiece | Finished]) -> dict[str, Any]:
        text, entries, finished = _split(events)
        logprobs = self.logprobs(entries) if entries else None
        choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": _finish_reason(finished)}
        return self.envelope(choice, finished)


def _chat_logprob(entry: TokenLogprob) -> dict[str, Any]:
    # "id" is llama-server's addition to OpenAI's fields (which clients ignore): the glass box shows it.
    return {
        "id": entry.id,
        "token": entry.token,
        "logprob": entry.logprob,
        "bytes": list(entry.token_bytes),
        "top_logprobs": [
            {"id": alt.id, "token": alt.token, "logprob": alt.logprob, "bytes": list(alt.token_bytes)}
            for alt in entry.alternatives
        ],
    }


class _ChatShape(_Shape):
    object_name = "chat.completion.chunk"
    prefix = "chatcmpl"

    def chunk(self, event: TextPiece | Finished) -> dict[str, Any]:
        if isinstance(event, Finished):
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": _finish_reason(event)}
            return self.envelope(choice, event)
        logprobs = {"content": [_chat_logprob(entry) for entry in event.logprobs]} if event.logprobs else None
        delta = {"role": "assistant", "content": event.text}
        return self.envelope({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": None}, None)

    def whole(self, events: list[TextPiece | Finished]) -> dict[str, Any]:
        text, entries, finished = _split(events)
        self.object_name = "chat.completion"
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": {"content": [_chat_logprob(entry) for entry in entries]} if entries else None,
            "finish_reason": _finish_reason(finished),
        }
        return self.envelope(choice, finished)


class _NativeShape(_Shape):
    """llama-server's /completion answer (not OpenAI's): its field names, so one client reads either server."""

    def __init__(self, model: str, *, n_probs: int, return_tokens: bool) -> None:
        super().__init__(model)
        self.n_probs, self.return_tokens = n_probs, return_tokens

    def whole(self, events: list[TextPiece | Finished]) -> dict[str, Any]:
        text, entries, finished = _split(events)
        stop_type = "eos" if finished.ended else "limit" if finished.finish_reason == "length" else "word"
        document: dict[str, Any] = {
            "content": text,
            "tokens": [entry.id for entry in entries] if self.return_tokens else [],
            "stop": True,
            "model": self.model,
            "stop_type": stop_type,
            "tokens_predicted": finished.completion_tokens,
            "tokens_evaluated": finished.prompt_tokens,
            "timings": _timings(finished),
        }
        if self.n_probs:
            document["completion_probabilities"] = [_chat_logprob(entry) for entry in entries]
        return document


def api_app(runner: Runner, turns: Turns, priority: int) -> Starlette:
    return Starlette(routes=EngineAPI(runner, turns, priority).routes())


def create_app(runner: Runner, token: str, turns: Turns | None = None) -> ASGIApp:
    """The app's own listener: its requests go ahead of API traffic waiting in `turns`."""
    return BearerAuth(api_app(runner, turns or Turns(max_waiting_api=0), APP), token)


def peak_resident_bytes() -> int:
    """The most RAM this process has held at once: what memory estimates are checked against."""
    if sys.platform == "win32":
        return int(psutil.Process().memory_info().peak_wset)
    if sys.platform.startswith("linux"):
        # Not getrusage: Linux carries ru_maxrss over from the parent we were forked from (the GUI, pytest).
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # macOS: bytes
