"""16 streaming clients at once against `localai-app serve` on the starter model (2 threads, 2048 context), each
asking for the same number of tokens with its own fresh prompt, through the same measuring code as
`localai-app bench` (core/bench_requests.py: httpx, SSE, no retries: a 429 is counted, never retried).

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
import re
import statistics
import sys
import time
from pathlib import Path

from benchmarks.engine_vs_raw import fresh_prompt
from benchmarks.serve_vs_raw import Served, load_average, serving
from localai_app.core.bench_requests import Burst, Outcome, percentile, run_requests
from localai_app.core.serving import DEFAULT_MAX_QUEUE
from localai_app.core.starter import ensure_starter

LOG_WAIT = 5.0  # seconds for serve's request log to catch up with the replies
STATUS_IN_LOG = re.compile(r"POST /v1/completions  (\d{3})  ")


def single_streams(served: Served, rounds: int, tokens: int, first_prompt: int) -> list[Outcome]:
    return [
        run_requests(served.base_url, served.key, served.model, [fresh_prompt(first_prompt + number)], tokens)[0][0]
        for number in range(rounds)
    ]


def burst(served: Served, clients: int, tokens: int, first_prompt: int) -> Burst:
    prompts = [fresh_prompt(first_prompt + n) for n in range(clients)]
    outcomes, wall = run_requests(served.base_url, served.key, served.model, prompts, tokens)
    return Burst(clients, outcomes, wall)


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
        single_streams(served, 1, 4, 1000)  # warm up: first request after a load is slower
        singles = single_streams(served, args.single_rounds, args.tokens, 2000)
        clients = burst(served, args.clients, args.tokens, 3000)
        outcomes, wall = clients.outcomes, clients.wall_s
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
    completed, refused, total_tokens = clients.completed, clients.refused, clients.tokens
    print(
        f"{args.clients} concurrent: {len(completed)} completed, {len(refused)} refused (429), "
        f"{len(outcomes) - len(completed) - len(refused)} failed, wall {wall:.1f} s"
    )
    if completed:
        latencies = [o.latency_s for o in completed]
        ttfts = [o.ttft_s for o in completed]
        concurrent_speed = clients.throughput_tok_s
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
