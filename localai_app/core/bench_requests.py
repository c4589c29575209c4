"""Timed completion requests against an OpenAI-compatible server, one at a time or many at once: what
`localai-app bench` and benchmarks/serve_concurrency.py both measure with.

Every request streams, so the time to the first token is seen on the client's clock; the server's closing chunk
gives its own token counts (`usage`) and llama.cpp's `timings` (prompt and generation time on the engine's clock).
A request either completes, is refused with HTTP 429 (the queue is full), or fails; nothing is retried.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from localai_app.core.errors import AppError

SEED = 1
REQUEST_TIMEOUT = 600.0  # seconds: a long prompt on a slow machine, behind a queue
CANCEL_POLL = 0.1  # seconds between two looks at the cancel flag while requests run


class BenchCancelledError(AppError):
    """The user stopped the benchmark; whatever was running has been stopped."""


@dataclass(frozen=True)
class Outcome:
    status: str  # "completed", "refused" (HTTP 429) or "failed"
    latency_s: float = 0.0  # request sent -> last token (or -> the refusal)
    ttft_s: float = 0.0  # request sent -> first token's text
    tokens: int = 0  # the server's usage.completion_tokens
    chunks: int = 0  # streamed chunks that carried text
    detail: str = ""  # why it failed, or the Retry-After of a refusal
    prompt_tokens: int = 0  # the server's usage.prompt_tokens
    prompt_ms: float | None = None  # llama.cpp's timings, when the server reports them
    generation_ms: float | None = None
    generation_tok_s: float | None = None


def api_client(base_url: str, api_key: str | None) -> httpx.AsyncClient:
    """A client for `base_url` (".../v1"); no proxy from the environment: these servers are local."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/", headers=headers, timeout=REQUEST_TIMEOUT, trust_env=False
    )


async def one_request(
    client: httpx.AsyncClient, model: str, prompt: str, tokens: int, *, ignore_eos: bool = False
) -> Outcome:
    """One streamed completion of `tokens` tokens at temperature 0."""
    body: dict[str, Any] = {
        "model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0.0, "seed": SEED, "stream": True,
    }  # fmt: skip
    if ignore_eos:
        body["ignore_eos"] = True
    started = time.perf_counter()
    first = last = 0.0
    chunks = 0
    closing: dict[str, Any] | None = None
    try:
        async with aconnect_sse(client, "POST", "completions", json=body) as source:
            response = source.response
            if response.status_code == 429:
                retry_after = response.headers.get("Retry-After", "none")
                return Outcome("refused", time.perf_counter() - started, detail=f"Retry-After {retry_after}")
            if response.status_code >= 400:
                await response.aread()
                return Outcome("failed", time.perf_counter() - started, detail=f"HTTP {response.status_code}")
            async for event in source.aiter_sse():
                if event.data == "[DONE]":
                    break
                chunk = json.loads(event.data)
                if "error" in chunk:
                    return Outcome("failed", time.perf_counter() - started, detail=str(chunk["error"]))
                choice = chunk["choices"][0] if chunk.get("choices") else {}
                if choice.get("text"):
                    last = time.perf_counter()
                    first = first or last
                    chunks += 1
                if choice.get("finish_reason") is not None:
                    closing = chunk
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as error:  # what a broken server or stream raises
        return Outcome("failed", time.perf_counter() - started, detail=f"{type(error).__name__}: {error}")
    ended = time.perf_counter()
    if closing is None:
        return Outcome("failed", ended - started, detail=f"stream ended early after {chunks} chunks")
    usage = closing.get("usage") or {}
    timings = closing.get("timings") or {}
    return Outcome(
        "completed",
        ended - started,
        (first or ended) - started,
        int(usage.get("completion_tokens", chunks)),
        chunks,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        prompt_ms=_number(timings.get("prompt_ms")),
        generation_ms=_number(timings.get("predicted_ms")),
        generation_tok_s=_number(timings.get("predicted_per_second")),
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def run_requests(
    base_url: str,
    api_key: str | None,
    model: str,
    prompts: Sequence[str],
    tokens: int,
    *,
    ignore_eos: bool = False,
    cancel: threading.Event | None = None,
) -> tuple[list[Outcome], float]:
    """All `prompts` sent at once (one client each); their outcomes in order, and the wall time from the first
    sent to the last finished. BenchCancelledError, with every request closed, once `cancel` is set."""

    async def burst() -> tuple[list[Outcome], float]:
        async with api_client(base_url, api_key) as client:
            started = time.perf_counter()
            tasks = [
                asyncio.ensure_future(one_request(client, model, prompt, tokens, ignore_eos=ignore_eos))
                for prompt in prompts
            ]
            try:
                while not all(task.done() for task in tasks):
                    await asyncio.wait(tasks, timeout=CANCEL_POLL)
                    if cancel is not None and cancel.is_set():
                        raise BenchCancelledError("The benchmark was stopped.")
            finally:
                # Closing a stream is what tells the server to stop generating it.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            return [task.result() for task in tasks], time.perf_counter() - started

    return asyncio.run(burst())


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile: a value some request really had."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True)
class Burst:
    """What `clients` simultaneous requests gave, as the report's concurrency entries carry it."""

    clients: int
    outcomes: list[Outcome]
    wall_s: float

    @property
    def completed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "completed"]

    @property
    def refused(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "refused"]

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "failed"]

    @property
    def tokens(self) -> int:
        return sum(outcome.tokens for outcome in self.completed)

    @property
    def throughput_tok_s(self) -> float:
        """Generated tokens of every completed request ÷ the burst's wall time."""
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        latencies = [outcome.latency_s for outcome in self.completed]
        return {
            "clients": self.clients,
            "completed": len(self.completed),
            "failed": len(self.failed),
            "refused": len(self.refused),
            "tokens": self.tokens,
            "wall_s": self.wall_s,
            "throughput_tok_s": self.throughput_tok_s,
            "p50_s": percentile(latencies, 0.5) if latencies else None,
            "p95_s": percentile(latencies, 0.95) if latencies else None,
        }
