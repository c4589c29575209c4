"""`localai-app bench` end to end: real engines on the tiny and starter models, a broken file among them, the
report document checked for figures that agree with each other, and a cancel that leaves no engine behind."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import psutil
import pytest

from localai_app.core.bench import BenchPlan, run_bench
from localai_app.core.bench_requests import BenchCancelledError
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.engine.runner import Finished, Runner, Sampling
from tests.e2e.test_starter_and_cli import run_cli

pytestmark = pytest.mark.starter

STARTER = "gemma-3-270m-q4_k_m"
PROMPT_TOKENS, GEN_TOKENS = 32, 16


def test_bench_reports_consistent_figures_and_goes_on_past_a_broken_model(
    tiny_library_paths: AppPaths, starter_model: Path, tmp_path: Path
) -> None:
    (tiny_library_paths.models / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00not a model at all")
    result = run_cli(
        "bench", "tiny-base", "broken", STARTER,
        "--ctx", "512", "--prompt-tokens", str(PROMPT_TOKENS), "--gen-tokens", str(GEN_TOKENS),
        "--repeat", "2", "--concurrency", "1,4", "--threads", "2", "--no-quality", "--json",
        basedir=tmp_path / "base",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # one model failed; the others were measured
    document = json.loads(result.stdout)
    assert document["format"] == "localai-app-report/1"
    assert document["settings"]["concurrency"] == [1, 4]
    assert document["settings"]["threads"] == 2 and document["settings"]["quality"] is False
    tiny, broken, starter = document["models"]
    assert broken["name"] == "broken" and broken["error"] and not broken["runs"]
    assert "Traceback" not in result.stderr
    # Repeats interleave between models in the order given: A, B, A, B; the broken one is never loaded.
    loads = re.findall(r"Loading (\S+) \(repeat (\d)", result.stderr)
    assert loads == [("tiny-base", "1"), (STARTER, "1"), ("tiny-base", "2"), (STARTER, "2")]
    for model in (tiny, starter):
        assert model["error"] is None and model["quality"] is None
        assert [run["repeat"] for run in model["runs"]] == [0, 1]
        for run in model["runs"]:
            assert run["prompt_tokens"] == PROMPT_TOKENS
            assert run["gen_tokens"] == GEN_TOKENS  # ignore_eos: exactly as many as asked
            # Decode speed counts the tokens after the first (which the prompt pass makes) over the time after it.
            assert run["gen_tok_s"] * run["gen_s"] == pytest.approx(GEN_TOKENS - 1, rel=0.01)
            assert run["prompt_tok_s"] * run["prompt_s"] == pytest.approx(PROMPT_TOKENS)
            assert 0 < run["prompt_s"] <= run["ttft_s"]  # the client's clock also counts HTTP
            assert run["load_s"] > 0 and run["peak_ram_bytes"] > 0 and run["peak_vram_bytes"] is None
        for metric, spread in model["summary"].items():
            if spread is not None:
                assert spread["min"] <= spread["median"] <= spread["max"], metric
        assert model["summary"]["peak_vram_bytes"] is None
        levels = {level["clients"]: level for level in model["concurrency"]}
        assert set(levels) == {1, 4}
        for clients, level in levels.items():
            assert (level["completed"], level["failed"], level["refused"]) == (clients, 0, 0)
            assert level["tokens"] == clients * GEN_TOKENS
            assert level["p50_s"] <= level["p95_s"] <= level["wall_s"]
    assert starter["licence"]["id"] == "gemma" and starter["quantization"] == "Q4_K_M"
    assert len(starter["sha256"]) == 64


def test_quality_is_measured_once_per_model_and_printed(tiny_library_paths: AppPaths, tmp_path: Path) -> None:
    result = run_cli(
        "bench", "tiny-base", "--ctx", "512", "--prompt-tokens", "16", "--gen-tokens", "4", "--repeat", "2",
        "--concurrency", "0", "--report", str(tmp_path / "report.json"),
        basedir=tmp_path / "base",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "perplexity" in result.stdout and "tasks passed" in result.stdout
    (model,) = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["models"]
    assert len(model["runs"]) == 2 and model["concurrency"] == []
    assert model["quality"]["perplexity"] > 1 and model["quality"]["tasks"]["total"] > 0
    assert result.stderr.count("tiny-base: perplexity") >= 1


def test_ignore_eos_generates_exactly_max_tokens(tiny_model: Path) -> None:
    runner = Runner(tiny_model, context_length=512, threads=1, gpu_layers=0)
    prompt = runner.tokenize("Once upon a time", rendered_chat=False)

    def finish(seed: int, *, ignore_eos: bool) -> Finished:
        # Hot and unfiltered: the tiny model's end token comes up within a few hundred tokens.
        sampling = Sampling(
            max_tokens=400, temperature=5.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed, ignore_eos=ignore_eos
        )
        *_, finished = runner.generate(prompt, sampling, threading.Event())
        assert isinstance(finished, Finished)
        return finished

    seed = next(seed for seed in range(20) if finish(seed, ignore_eos=False).finish_reason == "stop")
    ignoring = finish(seed, ignore_eos=True)
    assert (ignoring.finish_reason, ignoring.completion_tokens) == ("length", 400)


def test_cancel_stops_the_benchmark_and_its_engine(app_paths: AppPaths, starter_model: Path) -> None:
    cancel = threading.Event()
    stages: list[str] = []

    def progress(stage: str, fraction: float, message: str) -> None:
        stages.append(stage)
        if stage == "run":  # the engine is loaded and a long reply is about to start
            threading.Timer(0.3, cancel.set).start()

    plan = BenchPlan(models=(STARTER,), ctx=2048, prompt_tokens=256, gen_tokens=1500, repeat=3, threads=2)
    with pytest.raises(BenchCancelledError):
        run_bench(plan, Library(app_paths), app_paths, progress, cancel)
    assert stages.count("run") == 1 and "done" not in stages
    assert not psutil.Process().children(recursive=True), "an engine process was left running"


def test_bench_refuses_bad_options_and_unknown_models(app_paths: AppPaths, tmp_path: Path) -> None:
    for options in (
        ["--repeat", "0"],
        ["--concurrency", "1,x"],
        ["--gen-tokens", "many"],
        ["--prompt-tokens", "2000", "--ctx", "1024"],
        ["--report", "out.pdf"],
    ):
        result = run_cli("bench", STARTER, *options, basedir=tmp_path / "base")
        assert result.returncode == 2, options
        assert "Traceback" not in result.stderr and result.stderr.strip(), options
    unknown = run_cli("bench", "no-such-model", basedir=tmp_path / "base")
    assert unknown.returncode == 2
    assert "No model named 'no-such-model'" in unknown.stderr
