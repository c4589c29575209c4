"""Generation speed and time to first token: through the engine process and HTTP/SSE vs raw in-process
llama-cpp-python, interleaved (A, B, A, B, ...) on the starter model with the same threads and context.

    .venv/bin/python benchmarks/engine_vs_raw.py [--rounds 5] [--tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import llama_cpp

from localai_app.core.client import Delta, EngineClient, ReplyStats, SamplingOptions
from localai_app.core.engine_process import EngineOptions, EngineProcess
from localai_app.core.starter import ensure_starter

PROMPT = "The history of the printing press begins"
THREADS = 2
CONTEXT = 2048


def raw_run(model: llama_cpp.Llama, tokens: int) -> tuple[float, float]:
    """(generation tokens/s, ttft ms) measured the same way for both sides: from the client's clock."""
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    for _ in model.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, stream=True, seed=1):
        last = time.perf_counter()
        first = first or last
        count += 1
    return (count - 1) / (last - first), (first - started) * 1000


def engine_run(client: EngineClient, tokens: int) -> tuple[float, float]:
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    for event in client.stream_completion(PROMPT, SamplingOptions(max_tokens=tokens, temperature=0.0, seed=1)):
        if isinstance(event, Delta):
            last = time.perf_counter()
            first = first or last
            count += 1
        assert not isinstance(event, ReplyStats) or event.completion_tokens == tokens
    return (count - 1) / (last - first), (first - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    path = ensure_starter()
    raw = llama_cpp.Llama(str(path), n_ctx=CONTEXT, n_threads=THREADS, verbose=False)
    process = EngineProcess(path, EngineOptions(context_length=CONTEXT, threads=THREADS))
    endpoint = process.start()
    client = EngineClient(endpoint.base_url, endpoint.token)
    try:
        raw_run(raw, 8), engine_run(client, 8)  # warm both caches before timing
        raws, engines = [], []
        for _ in range(args.rounds):
            raws.append(raw_run(raw, args.tokens))
            engines.append(engine_run(client, args.tokens))
    finally:
        client.close()
        process.stop()
    raw_speed = statistics.median(r[0] for r in raws)
    engine_speed = statistics.median(e[0] for e in engines)
    raw_ttft = statistics.median(r[1] for r in raws)
    engine_ttft = statistics.median(e[1] for e in engines)
    print(f"rounds={args.rounds} tokens={args.tokens} threads={THREADS} ctx={CONTEXT}")
    print(f"generation tok/s  raw {raw_speed:.1f}  engine {engine_speed:.1f}  ratio {engine_speed / raw_speed:.3f}")
    print(f"ttft ms           raw {raw_ttft:.1f}  engine {engine_ttft:.1f}  ratio {engine_ttft / raw_ttft:.3f}")


if __name__ == "__main__":
    main()
