"""The benchmark's pure parts: the plan's checks, the summary of runs, a burst's figures, the CLI's option types."""

from __future__ import annotations

import argparse

import pytest

from localai_app.cli_bench import _at_least, _levels
from localai_app.core.bench import RUN_METRICS, BenchPlan, gpu_memory_in, run_figures, summarise
from localai_app.core.bench_requests import Burst, Outcome, percentile
from localai_app.core.errors import AppError


@pytest.mark.parametrize(
    ("changes", "sentence"),
    [
        ({"models": ()}, "at least one model"),
        ({"repeat": 0}, "repeats must be at least 1"),
        ({"prompt_tokens": 1}, "prompt length must be at least 2"),
        ({"threads": 0}, "threads must be at least 1"),
        ({"gpu_layers": -1}, "GPU layers must be at least 0"),
        ({"prompt_tokens": 2000, "ctx": 2048}, "do not fit in a 2048-token context"),
        ({"concurrency": (1, 0)}, "between 1 and 256 clients"),
    ],
)
def test_plan_refuses_what_cannot_be_measured(changes: dict[str, object], sentence: str) -> None:
    plan = BenchPlan(**{"models": ("a",), **changes})  # type: ignore[arg-type]
    with pytest.raises(AppError, match=sentence):
        plan.check()


def test_default_plan_is_sensible() -> None:
    plan = BenchPlan(models=("a", "b")).check()
    assert plan.settings(threads=4)["concurrency"] == [1, 4, 8]
    assert plan.settings(threads=4)["threads"] == 4


def test_summary_gives_median_and_spread_and_none_for_what_no_run_measured() -> None:
    runs = [
        {"gen_tok_s": 80.0, "load_s": 0.5, "peak_vram_bytes": None},
        {"gen_tok_s": 90.0, "load_s": 0.7, "peak_vram_bytes": None},
        {"gen_tok_s": 84.0, "load_s": 0.4, "peak_vram_bytes": None},
    ]
    summary = summarise(runs)
    assert set(summary) == set(RUN_METRICS)
    assert summary["gen_tok_s"] == {"median": 84.0, "min": 80.0, "max": 90.0}
    assert summary["load_s"] == {"median": 0.5, "min": 0.4, "max": 0.7}
    assert summary["peak_vram_bytes"] is None
    assert summary["ttft_s"] is None  # absent from every run


def test_run_figures_use_the_engines_clock_for_prompt_and_generation() -> None:
    outcome = Outcome(
        "completed", latency_s=2.0, ttft_s=0.6, tokens=128, prompt_tokens=512, prompt_ms=500.0,
        generation_ms=1270.0, generation_tok_s=100.0,
    )  # fmt: skip
    figures = run_figures(outcome)
    assert figures["prompt_s"] == 0.5 and figures["prompt_tok_s"] == 1024.0
    assert figures["gen_s"] == 1.27 and figures["gen_tok_s"] == 100.0 and figures["gen_tokens"] == 128
    assert figures["ttft_s"] == 0.6
    # A server without llama.cpp's timings: those figures are not measured, not zero.
    bare = run_figures(Outcome("completed", latency_s=1.0, ttft_s=0.2, tokens=10, prompt_tokens=5))
    assert bare["prompt_s"] is None and bare["prompt_tok_s"] is None and bare["gen_tok_s"] is None


def test_burst_counts_only_completed_requests() -> None:
    outcomes = [
        Outcome("completed", latency_s=1.0, tokens=64),
        Outcome("completed", latency_s=3.0, tokens=64),
        Outcome("refused", latency_s=0.01),
        Outcome("failed", latency_s=0.5, detail="boom"),
    ]
    figures = Burst(4, outcomes, wall_s=4.0).as_json()
    assert figures == {
        "clients": 4, "completed": 2, "failed": 1, "refused": 1, "tokens": 128, "wall_s": 4.0,
        "throughput_tok_s": 32.0, "p50_s": 1.0, "p95_s": 3.0,
    }  # fmt: skip
    nothing = Burst(2, [Outcome("failed"), Outcome("failed")], wall_s=1.0).as_json()
    assert nothing["p50_s"] is None and nothing["throughput_tok_s"] == 0.0


def test_percentile_is_a_value_some_request_had() -> None:
    values = [float(n) for n in range(1, 21)]
    assert percentile(values, 0.5) == 10.0
    assert percentile(values, 0.95) == 19.0
    assert percentile([7.0], 0.95) == 7.0


def test_cli_option_types() -> None:
    assert _levels("1,4,8") == (1, 4, 8)
    assert _levels("0") == ()
    for bad in ("1,x", "0,4", "1,1000"):
        with pytest.raises(argparse.ArgumentTypeError):
            _levels(bad)
    assert _at_least(2)("5") == 5
    with pytest.raises(argparse.ArgumentTypeError, match="at least 2"):
        _at_least(2)("1")


# nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits, as it prints on a two-GPU machine
# with the engine (pid 4242) split across both and another program on the first.
NVIDIA_SMI_APPS = "4242, 3120\n1777, 812\n4242, 2950\n"


@pytest.mark.parametrize(
    ("listing", "pid", "expected"),
    [
        (NVIDIA_SMI_APPS, 4242, (3120 + 2950) * 1024 * 1024),  # both GPUs' share counted
        (NVIDIA_SMI_APPS, 1777, 812 * 1024 * 1024),
        (NVIDIA_SMI_APPS, 99, None),  # not on a GPU (or, in a container, listed under the host's pid)
        ("", 4242, None),  # no compute process at all
        ("4242, [N/A]\n", 4242, None),  # a driver that cannot say (some Windows/WDDM setups)
    ],
)
def test_gpu_memory_is_read_from_nvidia_smi_listing(listing: str, pid: int, expected: int | None) -> None:
    assert gpu_memory_in(listing, pid) == expected
