"""Generation speed and time to first token: through the engine process and HTTP/SSE vs raw in-process
llama-cpp-python, interleaved (A, B, A, B, ...) on the starter model with the same threads and context.

Two kinds of first token are timed:
- a fresh prompt (a new ~130-token text each round, as a new chat turn is): the ratio the product promises;
- the same short prompt again, which llama.cpp answers from its cache with a single decode step: this shows the
  fixed per-request cost of the process boundary (HTTP, validation, SSE) in milliseconds.

    .venv/bin/python benchmarks/engine_vs_raw.py [--rounds 7] [--tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterable

import llama_cpp

from localai_app.core.client import EngineClient
from localai_app.core.engine_process import EngineOptions, EngineProcess
from localai_app.core.replies import Delta, SamplingOptions
from localai_app.core.starter import ensure_starter

CACHED_PROMPT = "The history of the printing press begins"
THREADS = 2
CONTEXT = 2048
TOPICS = ["bridges", "rivers", "bread", "clocks", "glass", "maps", "bees", "ships", "paper", "salt", "wool", "tea"]


def fresh_prompt(round_number: int) -> str:
    """A prompt that shares nothing but BOS with the ones before it, so no cached prefix shortens it."""
    topic = TOPICS[round_number % len(TOPICS)]
    return (
        f"Lesson {round_number} is about {topic}. "
        + f"Students read about how {topic} changed daily life, who made them, what they cost, and why. " * 6
        + f"Write a short summary of {topic}:"
    )


def timed(stream: Iterable[object], is_token: type | None = None) -> tuple[float, float]:
    """(tokens/s after the first, ms to the first token), both from the caller's clock."""
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    for event in stream:
        if is_token is not None and not isinstance(event, is_token):
            continue
        last = time.perf_counter()
        first = first or last
        count += 1
    speed = (count - 1) / (last - first) if count > 1 else 0.0
    return speed, (first - started) * 1000


def raw_run(model: llama_cpp.Llama, prompt: str, tokens: int) -> tuple[float, float]:
    return timed(model.create_completion(prompt, max_tokens=tokens, temperature=0.0, stream=True, seed=1))


def engine_run(client: EngineClient, prompt: str, tokens: int) -> tuple[float, float]:
    sampling = SamplingOptions(max_tokens=tokens, temperature=0.0, seed=1)
    return timed(client.stream_completion(prompt, sampling), Delta)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    path = ensure_starter()
    raw = llama_cpp.Llama(str(path), n_ctx=CONTEXT, n_threads=THREADS, verbose=False)
    process = EngineProcess(path, EngineOptions(context_length=CONTEXT, threads=THREADS))
    endpoint = process.start()
    client = EngineClient(endpoint.base_url, endpoint.token)
    prompt_tokens = len(raw.tokenize(fresh_prompt(0).encode()))
    results: dict[str, list[tuple[float, float]]] = {
        "raw fresh": [],
        "engine fresh": [],
        "raw cached": [],
        "engine cached": [],
    }
    try:
        raw_run(raw, CACHED_PROMPT, 8), engine_run(client, CACHED_PROMPT, 8)  # warm both before timing
        for round_number in range(args.rounds):
            prompt = fresh_prompt(round_number)
            results["raw fresh"].append(raw_run(raw, prompt, args.tokens))
            results["engine fresh"].append(engine_run(client, prompt, args.tokens))
            results["raw cached"].append(raw_run(raw, CACHED_PROMPT, 4))
            results["engine cached"].append(engine_run(client, CACHED_PROMPT, 4))
            raw_run(raw, CACHED_PROMPT, 1), engine_run(client, CACHED_PROMPT, 1)  # next fresh prompt starts cold
    finally:
        client.close()
        process.stop()
    speed = {name: statistics.median(r[0] for r in runs) for name, runs in results.items()}
    ttft = {name: statistics.median(r[1] for r in runs) for name, runs in results.items()}
    print(f"rounds={args.rounds} tokens={args.tokens} threads={THREADS} ctx={CONTEXT} fresh prompt={prompt_tokens} tok")
    print(
        f"generation tok/s      raw {speed['raw fresh']:.1f}  engine {speed['engine fresh']:.1f}"
        f"  ratio {speed['engine fresh'] / speed['raw fresh']:.3f}"
    )
    print(
        f"ttft, fresh prompt    raw {ttft['raw fresh']:.1f} ms  engine {ttft['engine fresh']:.1f} ms"
        f"  ratio {ttft['engine fresh'] / ttft['raw fresh']:.3f}"
    )
    print(
        f"ttft, cached prompt   raw {ttft['raw cached']:.1f} ms  engine {ttft['engine cached']:.1f} ms"
        f"  fixed cost {ttft['engine cached'] - ttft['raw cached']:.1f} ms per request"
    )


if __name__ == "__main__":
    main()
