"""`localai-app bench MODEL…`: speed, memory and concurrency of each model here (core/bench.py), as tables, as the
report document (--json), or as a report file (--report, written by core/report.py)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from localai_app.core.bench import MAX_CONCURRENCY, BenchPlan, run_bench
from localai_app.core.errors import AppError
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.report import (
    WRITERS,
    bytes_text,
    model_rows,
    rate,
    seconds,
    spread_text,
    tasks_text,
    write_report,
)

DEFAULTS = BenchPlan(models=())


def _at_least(lowest: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, not {value}")
        return value

    return parse


def _levels(text: str) -> tuple[int, ...]:
    """ "1,4,8" -> (1, 4, 8); "0" or "" -> () (no concurrency measured)."""
    if text.strip() in ("", "0"):
        return ()
    parse = _at_least(1)
    levels = tuple(parse(part.strip()) for part in text.split(","))
    if any(level > MAX_CONCURRENCY for level in levels):
        raise argparse.ArgumentTypeError(f"at most {MAX_CONCURRENCY} clients")
    return levels


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    bench = commands.add_parser(
        "bench",
        help="measure models' speed, memory and concurrency here",
        description="Each model runs in a fresh engine per repeat; repeats are interleaved between models and "
        "reported as medians with their spread (lowest-highest).",
    )
    bench.add_argument("models", nargs="+", metavar="MODEL", help="library names or paths to .gguf files")
    bench.add_argument("--ctx", type=_at_least(16), default=DEFAULTS.ctx, help="context length (default %(default)s)")
    bench.add_argument(
        "--prompt-tokens", type=_at_least(2), default=DEFAULTS.prompt_tokens, help="prompt length (default %(default)s)"
    )
    bench.add_argument(
        "--gen-tokens", type=_at_least(2), default=DEFAULTS.gen_tokens, help="tokens generated (default %(default)s)"
    )
    bench.add_argument("--repeat", type=_at_least(1), default=DEFAULTS.repeat, help="runs per model (default 3)")
    bench.add_argument(
        "--concurrency",
        type=_levels,
        default=DEFAULTS.concurrency,
        metavar="N,N,…",
        help="clients at once through the local API, per level (default 1,4,8; 0: none)",
    )
    bench.add_argument("--threads", type=_at_least(1), help="CPU threads (default: physical cores)")
    bench.add_argument("--gpu-layers", type=_at_least(0), default=0, help="layers on the GPU (default 0)")
    bench.add_argument("--no-quality", action="store_true", help="skip the quality measurements (perplexity, tasks)")
    bench.add_argument("--json", action="store_true", help="print the report document as JSON")
    bench.add_argument("--report", type=Path, metavar="FILE", help="also write the report: .html, .md, .csv or .json")
    return bench


def run(paths: AppPaths, args: argparse.Namespace) -> int:
    plan = BenchPlan(
        models=tuple(args.models),
        ctx=args.ctx,
        prompt_tokens=args.prompt_tokens,
        gen_tokens=args.gen_tokens,
        repeat=args.repeat,
        concurrency=args.concurrency,
        threads=args.threads,
        gpu_layers=args.gpu_layers,
        quality=not args.no_quality,
        command=shlex.join(["localai-app", *sys.argv[1:]]),
    ).check()
    if args.report is not None and args.report.suffix.lower() not in WRITERS:
        raise AppError(f"A report can be saved as {', '.join(sorted(WRITERS))}, not as {args.report.name}.")
    document = run_bench(plan, Library(paths), paths, progress=_print_progress)
    # Shown before the file is written: minutes of measurements must survive a report that cannot be saved.
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_tables(document)
    if args.report is not None:
        write_report(document, args.report)
        print(f"Report written to {args.report}.", file=sys.stderr)
    return 1 if any(model.get("error") for model in document["models"]) else 0


def _print_progress(stage: str, fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def print_tables(document: dict[str, Any]) -> None:
    settings = document["settings"]
    print(
        f"{settings['prompt_tokens']}-token prompts, {settings['gen_tokens']} generated tokens, context "
        f"{settings['ctx']}, {settings['threads']} threads, {settings['gpu_layers']} GPU layers; median of "
        f"{settings['repeat']} runs (lowest-highest)."
    )
    for entry, row in zip(document["models"], model_rows(document), strict=True):
        print(f"\n{row.name}" + (f"  {row.quantization}" if row.quantization else ""))
        if entry.get("error"):
            print(f"  FAILED: {entry['error']}")
        if not entry.get("runs"):
            continue
        vram = "no GPU" if row.peak_vram_bytes is None else bytes_text(row.peak_vram_bytes)
        for label, value in (
            ("load", f"{spread_text(row.load_s, seconds)} s"),
            ("prompt processing", f"{spread_text(row.prompt_tok_s)} tok/s"),
            ("time to first token", f"{spread_text(row.ttft_s, seconds)} s"),
            ("generation", f"{spread_text(row.gen_tok_s)} tok/s"),
            ("peak RAM", bytes_text(row.peak_ram_bytes)),
            ("peak VRAM", vram),
        ):
            print(f"  {label:<21}{value}")
        if entry.get("quality"):
            print(f"  {'perplexity':<21}{rate(row.perplexity)}  (lower is better)")
            print(f"  {'tasks passed':<21}{tasks_text(row)}")
        if entry.get("concurrency"):
            print(f"  {'clients':>9}{'completed':>11}{'failed':>8}{'tok/s':>9}{'p50 s':>8}{'p95 s':>8}")
            for level in entry["concurrency"]:
                print(
                    f"  {level['clients']:>9}{level['completed']:>11}{level['failed'] + level['refused']:>8}"
                    f"{rate(level['throughput_tok_s']):>9}{seconds(level['p50_s']):>8}{seconds(level['p95_s']):>8}"
                )
