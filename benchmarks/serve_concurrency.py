"""16 streaming clients at once against `localai-app serve` on the starter model (2 threads, 2048 context), each
asking for the same number of tokens with its own fresh prompt, through the official `openai` package
(`AsyncOpenAI`, retries off: a 429 is counted, never retried).

Every request must either complete or be refused with HTTP 429 (the queue is full); any other outcome is a failure,
printed loudly, and the script exits with status 1. For completed requests: p50 and p95 latency (request sent ->
last token) and time to first token, on the client's clock; the number of 429s (checked against serve's own request
log); total generated tokens/s over the burst's wall time. A single-stream baseline (one request at a time, same
length, tokens ÷ request time) runs on the same server just before the burst, for the ratio concurrent ÷ single.
The engine generates one sequence at a time, so that ratio can at best reach about 1: the queue shares the
machine out, it does not add to it.

The first pass uses serve's default queue limit (or --max-queue); a second pass on a fresh server uses
--second-max-queue (default: as many as there are clients, so that all of them complete; 0 skips it).

    PYTHONPATH=. .venv/bin/python benchmarks/serve_concurrency.py [--clients 16] [--tokens 64] [--max-queue N]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import openai

from benchmarks.engine_vs_raw import fresh_prompt
from benchmarks.serve_vs_raw import Served, load_average, serving
from localai_app.core.serving import DEFAULT_MAX_QUEUE
from localai_app.core.starter import ensure_starter

SEED = 1
LOG_WAIT = 5.0  # seconds for serve's request log to catch up with the replies
STATUS_IN_LOG = re.compile(r"POST /v1/completions  (\d{3})  ")


@dataclass(frozen=True)
class Outcome:
    status: str  # "completed", "refused" (HTTP 429) or "failed"
    latency_s: float = 0.0  # request sent -> last token (or -> the refusal)
    ttft_s: float = 0.0
    tokens: int = 0  # the server's usage.completion_tokens
    chunks: int = 0  # streamed chunks that carried text
    detail: str = ""  # why it failed, or the Retry-After of a refusal


async def one_request(client: openai.AsyncOpenAI, model: str, prompt: str, tokens: int) -> Outcome:
    started = time.perf_counter()
    first = last = 0.0
    chunks = usage_tokens = 0
    finished = False
    try:
        stream = await client.completions.create(
            model=model, prompt=prompt, max_tokens=tokens, temperature=0.0, seed=SEED, stream=True
        )
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].text:
                    last = time.perf_counter()
                    first = first or last
                    chunks += 1
                if chunk.choices and chunk.choices[0].finish_reason is not None:
                    finished = True
                if chunk.usage is not None:
                    usage_tokens = chunk.usage.completion_tokens
    except openai.RateLimitError as refused:
        retry_after = refused.response.headers.get("Retry-After", "none")
        return Outcome("refused", time.perf_counter() - started, detail=f"Retry-After {retry_after}")
    except Exception as error:  # anything else is exactly what this benchmark is here to catch
        return Outcome("failed", time.perf_counter() - started, detail=f"{type(error).__name__}: {error}")
    if not finished or not chunks:
        return Outcome("failed", time.perf_counter() - started, detail=f"stream ended early after {chunks} chunks")
    return Outcome("completed", last - started, first - started, usage_tokens, chunks)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: a value some request really had."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def single_streams(served: Served, rounds: int, tokens: int, first_prompt: int) -> list[Outcome]:
    async with served.async_client() as client:
        return [
            await one_request(client, served.model, fresh_prompt(first_prompt + number), tokens)
            for number in range(rounds)
        ]


async def burst(served: Served, clients: int, tokens: int, first_prompt: int) -> tuple[list[Outcome], float]:
    async with served.async_client() as client:
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(one_request(client, served.model, fresh_prompt(first_prompt + n), tokens) for n in range(clients))
        )
        return list(outcomes), time.perf_counter() - started


def logged_statuses(served: Served, expected: int) -> list[str]:
    """Statuses of the completions serve logged (one line per request), once it has logged `expected` of them."""
    deadline = time.monotonic() + LOG_WAIT
    while True:
        statuses = [match.group(1) for line in list(served.log) if (match := STATUS_IN_LOG.search(line))]
        if len(statuses) >= expected or time.monotonic() > deadline:
            return statuses
        time.sleep(0.1)


def run_pass(model: Path, max_queue: int | None, args: argparse.Namespace) -> int:
    """One server, baseline then burst; prints the figures and returns the number of failed requests."""
    options = ("--max-queue", str(max_queue)) if max_queue is not None else ()
    print(f"\n== --max-queue {max_queue if max_queue is not None else f'default ({DEFAULT_MAX_QUEUE})'}")
    with serving(model, *options) as served:
        asyncio.run(single_streams(served, 1, 4, 1000))  # warm up: first request after a load is slower
        singles = asyncio.run(single_streams(served, args.single_rounds, args.tokens, 2000))
        outcomes, wall = asyncio.run(burst(served, args.clients, args.tokens, 3000))
        statuses = logged_statuses(served, 1 + args.single_rounds + args.clients)
    failed = [o for o in singles + outcomes if o.status == "failed"]
    for outcome in failed:
        print(f"FAILED after {outcome.latency_s:.2f} s: {outcome.detail}", file=sys.stderr)
    good_singles = [o for o in singles if o.status == "completed"]
    single_speed = statistics.median(o.tokens / o.latency_s for o in good_singles) if good_singles else 0.0
    print(
        f"single stream ({len(good_singles)} of {len(singles)} sequential requests): "
        + "  ".join(f"{o.tokens / o.latency_s:.1f}" for o in good_singles)
        + f" tok/s, median {single_speed:.1f} tok/s"
    )
    completed = [o for o in outcomes if o.status == "completed"]
    refused = [o for o in outcomes if o.status == "refused"]
    total_tokens = sum(o.tokens for o in completed)
    print(
        f"{args.clients} concurrent: {len(completed)} completed, {len(refused)} refused (429), "
        f"{len(outcomes) - len(completed) - len(refused)} failed, wall {wall:.1f} s"
    )
    if completed:
        latencies = [o.latency_s for o in completed]
        ttfts = [o.ttft_s for o in completed]
        concurrent_speed = total_tokens / wall
        print(
            f"  latency (sent -> last token)   p50 {statistics.median(latencies):.2f} s"
            f"  p95 {percentile(latencies, 0.95):.2f} s  min {min(latencies):.2f}  max {max(latencies):.2f}"
        )
        print(
            f"  time to first token            p50 {statistics.median(ttfts):.2f} s"
            f"  p95 {percentile(ttfts, 0.95):.2f} s  min {min(ttfts):.2f}  max {max(ttfts):.2f}"
        )
        print(
            f"  total {total_tokens} tokens in {wall:.1f} s = {concurrent_speed:.1f} tok/s;"
            f"  ÷ single stream {concurrent_speed / single_speed if single_speed else float('nan'):.3f}"
        )
        mismatched = sum(o.chunks != o.tokens for o in completed)
        print(f"  tokens per request {sorted({o.tokens for o in completed})}; chunks != usage in {mismatched}")
    if refused:
        print(
            f"  429s came after {statistics.median(o.latency_s for o in refused) * 1000:.0f} ms (median), "
            + ", ".join(sorted({o.detail for o in refused}))
        )
    logged = {status: statuses.count(status) for status in sorted(set(statuses))}
    print(f"  serve's log: {len(statuses)} completions logged, by status {logged}")
    if statuses.count("429") != len(refused):
        print(f"  MISMATCH: clients counted {len(refused)} 429s, serve logged {statuses.count('429')}")
    return len(failed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64, help="tokens each request asks for")
    parser.add_argument("--max-queue", type=int, default=None, help="serve's --max-queue (default: serve's own)")
    parser.add_argument("--second-max-queue", type=int, default=None, help="second pass (default: --clients; 0: skip)")
    parser.add_argument("--single-rounds", type=int, default=3, help="sequential requests for the baseline")
    args = parser.parse_args()
    second = args.clients if args.second_max_queue is None else args.second_max_queue
    print(f"load average at start: {load_average()}")
    print(f"clients={args.clients} tokens={args.tokens} temperature=0, a fresh prompt per request")
    model = ensure_starter()
    failures = run_pass(model, args.max_queue, args)
    if second:
        failures += run_pass(model, second, args)
    print(f"\nload average at end: {load_average()}")
    if failures:
        print(f"FAILED: {failures} requests neither completed nor got a 429", file=sys.stderr)
        return 1
    print("every request completed or got a 429")
    return 0


if __name__ == "__main__":
    sys.exit(main())
