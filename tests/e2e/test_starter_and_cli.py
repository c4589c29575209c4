"""End to end: the real CLI as a subprocess, the real engine, the bundled starter model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from localai_app.core.engine_manager import manager_for
from localai_app.core.errors import EngineError
from localai_app.core.estimate import Overrides
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.replies import Delta, ReplyStats, SamplingOptions

pytestmark = pytest.mark.starter


def run_cli(
    *args: str,
    basedir: Path,
    env: Mapping[str, str] | None = None,
    preexec: Callable[[], object] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`localai-app --basedir BASEDIR ARGS…` in a child process; `env` adds to (or overrides) this environment."""
    return subprocess.run(
        [sys.executable, "-m", "localai_app", "--basedir", str(basedir), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec,
    )


def test_starter_streams_stops_and_gives_logprobs(app_paths: AppPaths, starter_model: Path) -> None:
    model = Library(app_paths).find("gemma-3-270m-q4_k_m")
    manager = manager_for(app_paths, Overrides(context=2048, threads=2))
    try:
        sampling = SamplingOptions(max_tokens=300, temperature=0.8, seed=3, top_logprobs=5)
        stream = manager.stream(model, "The history of the printing press", sampling)
        deltas = []
        for event in stream:
            assert isinstance(event, Delta)
            deltas.append(event)
            if len(deltas) == 5:
                break  # stop mid-stream
        stream.close()
        assert all(len(p.alternatives) == 5 for d in deltas for p in d.probabilities)
        events = list(manager.stream(model, "The capital of France is", SamplingOptions(max_tokens=8, seed=1)))
        text = "".join(e.text for e in events if isinstance(e, Delta))
        assert "Paris" in text or len(text) > 0
        stats = events[-1]
        assert isinstance(stats, ReplyStats) and stats.completion_tokens == 8
    finally:
        manager.shutdown()


def test_stop_during_a_long_prompt_pass_ends_the_reply_before_its_first_token(
    app_paths: AppPaths, starter_model: Path
) -> None:
    model = Library(app_paths).find("gemma-3-270m-q4_k_m")
    manager = manager_for(app_paths, Overrides(context=4096, threads=2))
    prompt = "Every lesson in this course begins with a question about the world. " * 220  # ~3,000 tokens
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.extend(manager.stream(model, prompt, SamplingOptions(max_tokens=4)))
        except EngineError as error:
            outcome.append(error)

    try:
        manager.load(model)
        reader = threading.Thread(target=read)
        reader.start()
        while reader.is_alive():  # Stop, pressed (again) until the reply is being read and ends
            manager.interrupt()
            reader.join(0.05)

        assert len(outcome) == 1 and isinstance(outcome[0], EngineError)  # no token, no stats: cut off
        after = list(manager.stream(model, "The capital of France is", SamplingOptions(max_tokens=3, seed=1)))
        assert isinstance(after[-1], ReplyStats) and after[-1].completion_tokens == 3
    finally:
        manager.shutdown()


def test_cli_chat_streams_with_stats(tmp_path: Path, starter_model: Path) -> None:
    result = run_cli(
        "chat", "gemma-3-270m-q4_k_m", "Water boils at", "--max-tokens", "10", "--seed", "1", "--stats",
        basedir=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    stats = json.loads(result.stderr.strip().splitlines()[-1])
    assert stats["completion_tokens"] == 10
    assert stats["ttft_ms"] > 0 and stats["tokens_per_second"] > 0
    assert "text completion" in result.stderr


def test_cli_models_and_version(tmp_path: Path, starter_model: Path) -> None:
    listed = json.loads(run_cli("models", "--json", basedir=tmp_path).stdout)
    assert [model["name"] for model in listed] == ["gemma-3-270m-q4_k_m"]
    assert listed[0]["licence"] == "Gemma Terms of Use" and listed[0]["has_chat_template"] is False
    version = run_cli("--version", basedir=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("localai-app ")


def test_cli_import_then_chat_by_name(tmp_path: Path, tiny_chat_model: Path) -> None:
    imported = run_cli("import", str(tiny_chat_model), basedir=tmp_path)
    assert imported.returncode == 0 and "Added tiny-chat" in imported.stdout
    chat = run_cli("chat", "tiny-chat", "hi", "--max-tokens", "3", basedir=tmp_path)
    assert chat.returncode == 0, chat.stderr


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "missing.gguf", "does not exist"),
        (lambda d: _write(d / "empty.gguf", b""), "is empty"),
        (lambda d: _write(d / "text.gguf", b"just some text"), "not a GGUF model file"),
        (lambda d: _write(d / "header.gguf", b"GGUF\x03\0\0\0" + b"\xff" * 40), "not a usable GGUF file"),
        (lambda d: d, "is a folder"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(tmp_path: Path, make: object, words: str) -> None:
    target = make(tmp_path)  # type: ignore[operator]
    for command in (["chat", str(target), "hi"], ["import", str(target)]):
        result = run_cli(*command, basedir=tmp_path / "base")
        assert result.returncode == 2
        assert words in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_cli_unknown_model_name(tmp_path: Path) -> None:
    result = run_cli("chat", "no-such-model", "hi", basedir=tmp_path)
    assert result.returncode == 2 and "No model named 'no-such-model'" in result.stderr


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path
