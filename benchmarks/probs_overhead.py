"""What the token view costs: generation tokens/s through the engine with top_logprobs=10 vs without, interleaved
(A, B, A, B, ...) on the starter model, same prompts, same engine. The issue's target: with ÷ without ≥ 0.95.

    PYTHONPATH=. .venv/bin/python benchmarks/probs_overhead.py [--rounds 7] [--tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Iterator
from dataclasses import replace

from benchmarks.engine_vs_raw import CACHED_PROMPT, CONTEXT, THREADS, fresh_prompt, timed
from localai_app.core.client import EngineClient
from localai_app.core.engine_process import EngineOptions, EngineProcess
from localai_app.core.replies import Delta, SamplingOptions
from localai_app.core.starter import ensure_starter

TOP = 10  # the token view's alternatives


def run(client: EngineClient, prompt: str, sampling: SamplingOptions) -> tuple[float, float, int]:
    """(tokens/s after the first, ms to the first, probability entries received)."""
    entries = 0

    def counted() -> Iterator[object]:
        nonlocal entries
        for event in client.stream_completion(prompt, sampling):
            if isinstance(event, Delta):
                entries += len(event.probabilities)
            yield event

    speed, ttft = timed(counted(), Delta)
    return speed, ttft, entries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    process = EngineProcess(ensure_starter(), EngineOptions(context_length=CONTEXT, threads=THREADS))
    endpoint = process.start()
    client = EngineClient(endpoint.base_url, endpoint.token)
    # Greedy with a fixed seed: both runs of a round generate the same tokens, so only the probabilities differ.
    plain = SamplingOptions(max_tokens=args.tokens, temperature=0.0, seed=1)
    with_probs = replace(plain, top_logprobs=TOP)
    speeds: dict[str, list[float]] = {"without": [], "with": []}
    try:
        run(client, CACHED_PROMPT, replace(plain, max_tokens=8)), run(client, CACHED_PROMPT, with_probs)  # warm up
        for round_number in range(args.rounds):
            prompt = fresh_prompt(round_number)
            # Alternate which goes first, so neither always meets a warmer cache.
            order = [("without", plain), ("with", with_probs)]
            for name, sampling in order if round_number % 2 == 0 else reversed(order):
                speed, _, entries = run(client, prompt, sampling)
                assert (entries > 0) == (name == "with")
                speeds[name].append(speed)
            print(
                f"round {round_number}: {speeds['with'][-1] / speeds['without'][-1]:.3f}", file=sys.stderr, flush=True
            )
    finally:
        client.close()
        process.stop()
    without, with_ = statistics.median(speeds["without"]), statistics.median(speeds["with"])
    print(f"rounds={args.rounds} tokens={args.tokens} threads={THREADS} ctx={CONTEXT} top_logprobs={TOP}")
    print(f"generation tok/s   without {without:.1f}  with {with_:.1f}  ratio {with_ / without:.3f} (target >= 0.95)")
    ratios = [w / o for w, o in zip(speeds["with"], speeds["without"], strict=True)]
    print(f"per round ratios   {', '.join(f'{ratio:.3f}' for ratio in ratios)}")


if __name__ == "__main__":
    main()
