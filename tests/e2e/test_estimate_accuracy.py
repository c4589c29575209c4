"""The estimates against the real engine on this machine: RAM within 15 % of the engine process's peak resident
memory, and the speed forecast within 30 % of measured generation speed (issue #3's accuracy bar)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from localai_app.core import hardware
from localai_app.core.client import EngineClient
from localai_app.core.engine_process import EngineOptions, EngineProcess
from localai_app.core.estimate import estimate_memory
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.replies import ReplyStats, SamplingOptions
from localai_app.core.speed import DEFAULT_EFFICIENCY, measure_bandwidth, speed_bound

RAM_TOLERANCE = 0.15
SPEED_TOLERANCE = 0.30


def peak_after_a_long_prompt(model: Path, context: int, prompt: str) -> int:
    """Load, run a prompt longer than one micro-batch plus a few tokens, and read the engine's own peak RSS."""
    process = EngineProcess(model, EngineOptions(context_length=context, threads=2))
    endpoint = process.start()
    client = EngineClient(endpoint.base_url, endpoint.token)
    try:
        list(client.stream_completion(prompt, SamplingOptions(max_tokens=16, temperature=0.0)))
        return int(client.health()["peak_resident_bytes"])
    finally:
        client.close()
        process.stop()


@pytest.mark.parametrize("context", [2048, 8192])
def test_starter_ram_estimate_is_within_15_percent(app_paths: AppPaths, starter_model: Path, context: int) -> None:
    model = Library(app_paths).find("gemma-3-270m-q4_k_m")
    assert model.shape is not None
    peak = peak_after_a_long_prompt(model.path, context, "Once upon a time, in a quiet town, " * 70)
    estimate = estimate_memory(model.shape, context).ram_bytes
    assert abs(estimate - peak) <= RAM_TOLERANCE * peak, f"estimate {estimate:,} vs peak {peak:,}"


@pytest.mark.parametrize("context", [256, 512])
def test_tiny_model_ram_estimate_is_within_15_percent(tmp_path: Path, tiny_model: Path, context: int) -> None:
    paths = AppPaths.under(tmp_path).create()
    model = Library(paths, include_starter=False).describe_file(tiny_model)
    assert model.shape is not None
    peak = peak_after_a_long_prompt(tiny_model, context, "abc " * (context // 8))
    estimate = estimate_memory(model.shape, context).ram_bytes
    assert abs(estimate - peak) <= RAM_TOLERANCE * peak, f"estimate {estimate:,} vs peak {peak:,}"


def test_starter_speed_forecast_is_within_30_percent(app_paths: AppPaths, starter_model: Path) -> None:
    """The forecast before any run taught the app anything: typical efficiency, this machine's bandwidth.
    Probe and generation alternate (A, B, A, B, ...) and medians are compared: the machine is shared and noisy."""
    machine = hardware.detect(with_build=False)
    model = Library(app_paths).find("gemma-3-270m-q4_k_m")
    assert model.shape is not None
    process = EngineProcess(model.path, EngineOptions(context_length=2048, threads=machine.physical_cores))
    endpoint = process.start()
    client = EngineClient(endpoint.base_url, endpoint.token)
    bounds, speeds = [], []
    try:
        for seed in range(3):
            bound = speed_bound(model.shape, measure_bandwidth(machine.physical_cores))  # the engine is idle now
            assert bound is not None
            bounds.append(bound)
            events = client.stream_completion("The river", SamplingOptions(max_tokens=128, seed=seed))
            stats = [event for event in events if isinstance(event, ReplyStats)]
            speeds.append(stats[0].tokens_per_second)
    finally:
        client.close()
        process.stop()
    predicted = DEFAULT_EFFICIENCY * statistics.median(bounds)
    measured = statistics.median(speeds)
    assert abs(predicted - measured) <= SPEED_TOLERANCE * measured, f"forecast {predicted:.1f}, measured {speeds}"
