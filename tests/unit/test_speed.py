"""The speed forecast: the bound, GPU splits, learning the efficiency from runs, and diagnosing slow runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from localai_app.core.advice import advise, learn_from_reply
from localai_app.core.estimate import plan_load
from localai_app.core.hardware import BuildInfo
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.replies import ReplyStats
from localai_app.core.speed import (
    BANDWIDTH_FILE,
    DEFAULT_EFFICIENCY,
    Run,
    SpeedHistory,
    diagnose_slow_run,
    efficiency_of,
    gpu_bandwidth,
    speed_bound,
)
from tests.unit.test_estimate import CUDA_BUILD, LLAMA_8B, machine, shape_of

GB = 1e9


def test_the_bound_is_bandwidth_over_bytes_per_token(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, LLAMA_8B)
    bound = speed_bound(shape, 50 * GB)
    assert bound is not None
    assert bound == pytest.approx(50 * GB / shape.bytes_read_per_token)
    assert 8 < bound < 12  # ~4.9 GB read per token of a Q4_K_M 8B


def test_offloaded_blocks_read_at_the_gpus_bandwidth(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, LLAMA_8B)
    rtx = gpu_bandwidth("NVIDIA GeForce RTX 4090")
    assert rtx == 1008 * GB
    cpu_only = speed_bound(shape, 50 * GB)
    half = speed_bound(shape, 50 * GB, 16, rtx)
    full = speed_bound(shape, 50 * GB, 33, rtx)
    assert cpu_only is not None and half is not None and full is not None
    assert cpu_only < half < full
    assert speed_bound(shape, 50 * GB, 16, None) is None  # an unknown GPU: no made-up number
    assert gpu_bandwidth("NVIDIA H100 PCIe") == 2000 * GB and gpu_bandwidth("NVIDIA H100 80GB HBM3") == 3350 * GB


def test_the_efficiency_is_learned_from_this_machines_replies(tmp_path: Path) -> None:
    history = SpeedHistory(tmp_path)
    assert efficiency_of(history.runs()) == DEFAULT_EFFICIENCY
    for tokens_per_second in (30.0, 40.0, 35.0):
        history.record(Run(250_000_000, tokens_per_second, 20 * GB, 2), tokens=100)
    history.record(Run(250_000_000, 1.0, 20 * GB, 2), tokens=3)  # too short to teach anything
    assert len(history.runs()) == 3
    assert efficiency_of(history.runs()) == pytest.approx(35.0 * 0.25 / 20)


def test_a_damaged_history_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "speed-history.json").write_text("{not json")
    assert SpeedHistory(tmp_path).runs() == []


def test_a_slow_run_is_explained(tmp_path: Path) -> None:
    no_avx2 = BuildInfo(("CPU",), False, ("SSE3",), "0.3.36")
    hardware = machine(32, build=no_avx2)
    slow = Run(4_900_000_000, 2.0, 50 * GB, 16)  # 20 % of the bound, 16 threads on 8 cores
    causes = diagnose_slow_run(slow, hardware, tmp_path / "model.gguf")
    assert any("without AVX2" in cause for cause in causes)
    assert any("16 threads on 8 physical cores" in cause for cause in causes)
    assert diagnose_slow_run(Run(4_900_000_000, 6.0, 50 * GB, 8), hardware, tmp_path / "model.gguf") == []


def test_advice_and_learning_with_the_starter(app_paths: AppPaths, starter_model: Path) -> None:
    model = Library(app_paths).find("gemma-3-270m-q4_k_m")
    assert model.shape is not None
    hardware = machine(16)
    (app_paths.cache / BANDWIDTH_FILE).write_text(
        f'{{"bytes_per_second": {20 * GB}, "threads": 8, "cpu_model": "Test CPU"}}'
    )
    advice = advise(model.shape, hardware, bandwidth=20 * GB, efficiency=0.5, learned_from_runs=0)
    assert advice.tokens_per_second == pytest.approx(0.5 * 20 * GB / model.shape.bytes_read_per_token)
    assert any(line.startswith("Speed: about") for line in advice.lines())

    plan = plan_load(model.shape, hardware)
    stats = ReplyStats(
        ttft_ms=50, completion_tokens=64, prompt_tokens=5, tokens_per_second=4.0, finish_reason="length", total_ms=1
    )
    notes = learn_from_reply(app_paths, machine=hardware, model=model, plan=plan, stats=stats)
    assert notes and "4.0 tokens/s" in notes[0] and "Likely:" in notes[0]
    assert len(SpeedHistory(app_paths.data).runs()) == 1

    gpu_plan = plan_load(model.shape, machine(16, gpu_gib=20, build=CUDA_BUILD))
    assert learn_from_reply(app_paths, machine=hardware, model=model, plan=gpu_plan, stats=stats) == []
    assert len(SpeedHistory(app_paths.data).runs()) == 1  # GPU runs do not teach the CPU efficiency
