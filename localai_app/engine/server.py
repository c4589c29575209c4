"""The engine's HTTP API: the OpenAI routes the app and other tools use, served by Starlette.

Generation runs on its own thread and hands pieces to the event loop one at a time, so a slow client never
blocks llama.cpp and a client that goes away stops its generation at the next token.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psutil
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from localai_app.engine.protocol import ChatRequest, CompletionRequest, TokenizeRequest
from localai_app.engine.runner import Finished, RequestError, Runner, Sampling, TextPiece, TokenLogprob
from localai_app.engine.templates import TemplateError

MAX_BODY_BYTES = 16 * 1024 * 1024
_END = object()


def error_response(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


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
    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def routes(self) -> list[Route]:
        return [
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/tokenize", self.tokenize, methods=["POST"]),
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
            body.stream,
            lambda: self.runner.tokenize(body.prompt, rendered_chat=False),
            lambda: body.sampling(body.logprobs),
            _CompletionShape(self.runner.description.id),
        )

    async def chat_completions(self, request: Request) -> Response:
        body = await _parse(request, ChatRequest)
        if isinstance(body, Response):
            return body
        messages = [message.model_dump() for message in body.messages]
        return await self._respond(
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

        def count() -> int:
            if body.messages is not None:
                rendered = self.runner.chat_prompt([message.model_dump() for message in body.messages])
                return len(self.runner.tokenize(rendered, rendered_chat=True))
            return len(self.runner.tokenize(body.prompt or "", rendered_chat=False))

        try:  # off the event loop: a long conversation takes a while to render and tokenize
            tokens = await run_in_threadpool(count)
        except (RequestError, TemplateError) as error:
            return error_response(400, str(error))
        return JSONResponse({"tokens": tokens, "context_length": self.runner.llama.n_ctx()})

    async def _respond(
        self,
        stream: bool,
        make_tokens: Callable[[], list[int]],
        make_sampling: Callable[[], Sampling],
        shape: _Shape,
    ) -> Response:
        try:
            tokens = make_tokens()
            sampling = make_sampling()
        except (RequestError, TemplateError, ValueError) as error:
            return error_response(400, str(error))
        if stream:
            return StreamingResponse(
                self._sse(tokens, sampling, shape),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        events = [event async for event in self._pieces(tokens, sampling)]
        failure = next((event for event in events if isinstance(event, Exception)), None)
        if failure is not None:
            return error_response(500, f"generation failed: {failure}", "server_error")
        return JSONResponse(shape.whole([event for event in events if not isinstance(event, Exception)]))

    async def _sse(self, tokens: list[int], sampling: Sampling, shape: _Shape) -> AsyncIterator[bytes]:
        async for event in self._pieces(tokens, sampling):
            if isinstance(event, Exception):
                payload = {"error": {"message": f"generation failed: {event}", "type": "server_error"}}
                yield b"data: " + json.dumps(payload).encode() + b"\n\n"
                return
            yield b"data: " + json.dumps(shape.chunk(event)).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def _pieces(self, tokens: list[int], sampling: Sampling) -> AsyncIterator[TextPiece | Finished | Exception]:
        """Run generation on a thread; yield its events here. Leaving early (client gone) cancels it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def produce() -> None:
            try:
                for event in self.runner.generate(tokens, sampling, cancel):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except Exception as error:  # reported to the client as a server error, never lost
                loop.call_soon_threadsafe(queue.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        threading.Thread(target=produce, name="generation", daemon=True).start()
        try:
            while (event := await queue.get()) is not _END:
                yield event  # type: ignore[misc]
        finally:
            # Not awaited: cancellation may be what brought us here. The runner's lock makes the next request
            # wait for this generation to notice the flag, which it does at the next token.
            cancel.set()


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
            # Same names as llama.cpp's llama-server, so clients can read either.
            document["timings"] = {
                "prompt_n": finished.prompt_tokens,
                "prompt_ms": finished.prompt_ms,
                "predicted_n": finished.completion_tokens,
                "predicted_ms": finished.generation_ms,
                "predicted_per_second": finished.tokens_per_second,
            }
        return document

    def chunk(self, event: TextPiece | Finished) -> dict[str, Any]:
        raise NotImplementedError

    def whole(self, events: list[TextPiece | Finished]) -> dict[str, Any]:
        raise NotImplementedError


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
    return {
        "token": entry.token,
        "logprob": entry.logprob,
        "bytes": list(entry.token_bytes),
        "top_logprobs": [
            {"token": alt.token, "logprob": alt.logprob, "bytes": list(alt.token_bytes)} for alt in entry.alternatives
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


def create_app(runner: Runner, token: str) -> ASGIApp:
    api = EngineAPI(runner)
    return BearerAuth(Starlette(routes=api.routes()), token)


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
