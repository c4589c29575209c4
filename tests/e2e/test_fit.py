"""Fit and refusal end to end: `localai-app fit`, a refused `chat`, and the manager's insist path."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from localai_app.core import hardware
from localai_app.core.engine_manager import EngineManager
from localai_app.core.errors import WontFitError
from localai_app.core.estimate import Overrides
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.replies import ReplyStats, SamplingOptions
from tests.e2e.test_starter_and_cli import run_cli
from tests.fakes.gguf_builder import Architecture, header_only_model

LLAMA_70B = Architecture("llama", 80, 8192, 28672, 64, 8, 128256, 131072)


def sparse_70b(directory: Path) -> Path:
    """A file with a real 70B header and holes where the 45 GB of weights would be: costs no disk."""
    path = directory / "llama-70b-Q4_K_M.gguf"
    _, size = header_only_model(path, LLAMA_70B)
    with path.open("r+b") as handle:
        handle.truncate(size)
    return path


def test_fit_prints_verdict_choices_and_forecast(tmp_path: Path, starter_model: Path) -> None:
    result = run_cli("fit", "gemma-3-270m-q4_k_m", basedir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Verdict: fits: needs" in result.stdout and "Speed: about" in result.stdout
    assert "Context: 8,192 tokens" in result.stdout and "Threads:" in result.stdout
    as_json = run_cli("fit", "gemma-3-270m-q4_k_m", "--ctx", "32768", "--json", basedir=tmp_path)
    document = json.loads(as_json.stdout)
    assert document["verdict"] == "fits" and document["context"] == 32768
    assert 0.9e9 < document["ram_bytes"] < 1.1e9 and document["tokens_per_second"] > 0


def test_a_model_too_big_for_this_machine_is_refused_with_ways_out(tmp_path: Path) -> None:
    if os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") > 40 * 1024**3:
        pytest.skip("this machine has room for a 70B model")
    big = sparse_70b(tmp_path)
    fit = run_cli("fit", str(big), "--json", basedir=tmp_path / "app")
    assert json.loads(fit.stdout)["verdict"] == "won't fit"
    refused = run_cli("chat", str(big), "Hello", basedir=tmp_path / "app")
    assert refused.returncode == 2
    message = refused.stderr.strip()
    assert "will not fit: it needs" in message and "Try " in message and "smaller" in message
    assert "Traceback" not in refused.stderr


def test_insisting_loads_what_the_estimate_refused(tmp_path: Path, tiny_model: Path) -> None:
    paths = AppPaths.under(tmp_path).create()
    model = Library(paths, include_starter=False).describe_file(tiny_model)
    starved = replace(hardware.detect(with_build=False), available_ram_bytes=10 * 1024 * 1024)
    manager = EngineManager(Overrides(threads=1), machine=lambda: starved)
    try:
        with pytest.raises(WontFitError, match="will not fit"):
            manager.load(model)
        assert manager.engine_pid is None
        events = list(manager.stream(model, "abc", SamplingOptions(max_tokens=4), insist=True))
        assert isinstance(events[-1], ReplyStats)
        assert manager.last_plan is not None and manager.last_plan.context == 512
    finally:
        manager.shutdown()
