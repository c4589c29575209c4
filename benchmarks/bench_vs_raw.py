"""Generation speed as `localai-app bench` reports it vs raw in-process llama-cpp-python: the starter model, the
same threads (2) and context (2048), temperature 0, interleaved rounds (the side that goes first alternates), each
round a fresh prompt of the same length on both sides. Target: bench ÷ raw >= 0.97, so the benchmark's figures are
llama.cpp's speed, not the cost of its own measuring (engine process, HTTP, SSE, the public API's checks).

Bench side: core.bench.run_bench with one repeat and no concurrency, so each round loads a fresh engine as the CLI
does; its gen_tok_s (tokens after the first ÷ time after the first, on the engine's clock). Raw side:
serve_vs_raw.raw_run, tokens/s after the first on the caller's clock.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_vs_raw.py [--rounds 7] [--tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import llama_cpp

from benchmarks.engine_vs_raw import CONTEXT, THREADS, fresh_prompt
from benchmarks.serve_vs_raw import SEED, load_average, raw_run
from localai_app.core.bench import BenchPlan, run_bench
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.starter import ensure_starter


def bench_speed(plan: BenchPlan, library: Library, paths: AppPaths) -> tuple[float, int]:
    """(generation tok/s, tokens generated) of one bench run."""
    model = run_bench(plan, library, paths)["models"][0]
    if model["error"]:
        raise RuntimeError(model["error"])
    run = model["runs"][0]
    return float(run["gen_tok_s"]), int(run["gen_tokens"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated each round (default 128)")
    args = parser.parse_args()
    path = ensure_starter()
    print(f"load average at start: {load_average()}")
    # The raw side as serve_vs_raw.py sets it up; the bench side gets a prompt of the same length.
    raw = llama_cpp.Llama(str(path), n_ctx=CONTEXT, n_threads=THREADS, seed=SEED, verbose=False)
    plan = BenchPlan(
        models=(str(path),), ctx=CONTEXT, prompt_tokens=len(raw.tokenize(fresh_prompt(0).encode())),
        gen_tokens=args.tokens, repeat=1, concurrency=(), threads=THREADS, quality=False,
    ).check()  # fmt: skip
    raws: list[float] = []
    benches: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-vs-raw-") as basedir:
        paths = AppPaths.under(Path(basedir)).create()
        library = Library(paths)
        raw_run(raw, "Warm up", 4)
        print("round  first  raw tok/s (chunks)  bench tok/s (tokens)  ratio")
        for round_number in range(args.rounds):
            prompt = fresh_prompt(round_number)
            if round_number % 2 == 0:
                raw_result = raw_run(raw, prompt, args.tokens)
                speed, tokens = bench_speed(plan, library, paths)
            else:
                speed, tokens = bench_speed(plan, library, paths)
                raw_result = raw_run(raw, prompt, args.tokens)
            raws.append(raw_result.speed)
            benches.append(speed)
            print(
                f"{round_number:5}  {'raw' if round_number % 2 == 0 else 'bench':5}  {raw_result.speed:9.1f} "
                f"({raw_result.chunks:3})  {speed:11.1f} ({tokens:3})  {speed / raw_result.speed:5.3f}"
            )
    raw_speed, bench_speed_median = statistics.median(raws), statistics.median(benches)
    ratios = [bench / raw_speed_round for bench, raw_speed_round in zip(benches, raws, strict=True)]
    print(
        f"\nrounds={args.rounds} tokens={args.tokens} threads={THREADS} ctx={CONTEXT} prompt={plan.prompt_tokens} tok"
        f"\ngeneration tok/s   raw {raw_speed:.1f}  bench {bench_speed_median:.1f}"
        f"  ratio of medians {bench_speed_median / raw_speed:.3f}"
        f"  median of round ratios {statistics.median(ratios):.3f}  (target >= 0.97)"
        f"  range {min(ratios):.3f}-{max(ratios):.3f}"
    )
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
