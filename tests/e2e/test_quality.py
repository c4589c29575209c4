"""Quality checks end to end: the starter (a base model, scored in completion form) and the tiny chat model each
through a real engine, and a remote server without the perplexity route. The tiny models are random, so only the
shape of the result is checked for them."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from dataclasses import replace

import pytest

from localai_app.core.bench_requests import BenchCancelledError
from localai_app.core.client import EngineClient
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.quality import TEXT_ID, WINDOW, load_tasks, measure
from tests.conftest import engine_client

STARTER = "gemma-3-270m-q4_k_m"


def assert_shape(entry: dict[str, object], form: str) -> None:
    json.dumps(entry)  # the report is JSON
    tasks = entry["tasks"]
    assert isinstance(tasks, dict)
    assert tasks["form"] == form
    total = len(load_tasks().items)
    assert tasks["total"] == total == len(tasks["items"])
    assert tasks["passed"] == sum(item["passed"] for item in tasks["items"])
    # "error" only where the server refused the prompt.
    assert all(set(item) - {"error"} == {"id", "passed", "answer"} for item in tasks["items"])


@pytest.mark.starter
def test_starter_is_scored_in_completion_form(tiny_library_paths: AppPaths) -> None:
    starter = Library(tiny_library_paths).find(STARTER)
    assert not starter.has_chat_template
    fractions: list[float] = []
    with engine_client(starter.path, context_length=WINDOW, threads=2) as client:
        started = time.perf_counter()
        entry = measure(client, starter, progress=lambda fraction, message: fractions.append(fraction))
        print(f"starter quality in {time.perf_counter() - started:.1f} s: {json.dumps(entry, indent=1)}")
    assert_shape(entry, "completion")
    assert entry["text"] == TEXT_ID and entry["perplexity_error"] is None
    assert isinstance(entry["perplexity"], float) and 1 < entry["perplexity"] < 100
    assert entry["perplexity_tokens"] >= 4 * (WINDOW // 2 - 1)
    assert fractions == sorted(fractions) and fractions[0] >= 0 and fractions[-1] < 1
    # A base model answering arithmetic after two worked examples: it gets some right.
    assert entry["tasks"]["passed"] >= 1


def test_tiny_chat_model_is_scored_in_chat_form(tiny_library_paths: AppPaths) -> None:
    chat = Library(tiny_library_paths, include_starter=False).find("tiny-chat")
    assert chat.has_chat_template
    with engine_client(chat.path, context_length=WINDOW, threads=2) as client:
        entry = measure(client, chat)
    assert_shape(entry, "chat")
    assert isinstance(entry["perplexity"], float) and math.isfinite(entry["perplexity"]) and entry["perplexity"] > 1


def test_a_server_without_the_route_still_gets_its_tasks_scored(
    llama_cpp_server: tuple[str, subprocess.Popen[bytes]], tiny_library_paths: AppPaths
) -> None:
    url, _ = llama_cpp_server
    chat = Library(tiny_library_paths, include_starter=False).find("tiny-chat")
    remote = replace(chat, server="llama-cpp-python")
    client = EngineClient(url, None, model="tiny-chat", label="the server llama-cpp-python")
    try:
        entry = measure(client, remote)
    finally:
        client.close()
    assert entry["perplexity"] is None and entry["perplexity_tokens"] == 0
    assert entry["perplexity_error"] == "perplexity not available from the server llama-cpp-python"
    assert_shape(entry, "chat")


def test_an_engine_whose_context_is_shorter_than_a_window_says_so(tiny_library_paths: AppPaths) -> None:
    base = Library(tiny_library_paths, include_starter=False).find("tiny-base")
    with engine_client(base.path, context_length=WINDOW // 2, threads=2) as client:
        entry = measure(client, base)
    assert entry["perplexity"] is None
    assert "more than the 256-token context" in entry["perplexity_error"]
    assert_shape(entry, "completion")
    refused = [item for item in entry["tasks"]["items"] if "error" in item]
    assert refused and all(not item["passed"] and "context" in item["error"] for item in refused)


def test_cancel_stops_the_tasks_at_once(tiny_library_paths: AppPaths) -> None:
    chat = Library(tiny_library_paths, include_starter=False).find("tiny-chat")
    cancel = threading.Event()
    messages: list[str] = []

    def progress(fraction: float, message: str) -> None:
        messages.append(message)
        if message == "task arith-2":
            cancel.set()

    with engine_client(chat.path, context_length=WINDOW, threads=2) as client, pytest.raises(BenchCancelledError):
        measure(client, chat, cancel=cancel, progress=progress)
    assert messages[-2:] == ["task arith-1", "task arith-2"]
