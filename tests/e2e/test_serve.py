"""`localai-app serve` as its users meet it: the official `openai` client against a real engine, on the tiny
model for the protocol and the starter model where timing and queueing matter."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from localai_app.core.engine_manager import manager_for
from localai_app.core.estimate import Overrides
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.replies import ReplyStats, SamplingOptions
from localai_app.core.serving import RequestRecord, ServeOptions, snippets
from localai_app.engine.protocol import MAX_MESSAGES, MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH, MAX_TOKENS
from tests.conftest import free_port
from tests.e2e.test_starter_and_cli import run_cli

KEY = "sk-local-test-0123456789abcdef"
START_TIMEOUT = 120.0


class Served:
    def __init__(self, process: subprocess.Popen[str], base_url: str) -> None:
        self.process = process
        self.base_url = base_url
        self.log: list[str] = []
        self._clients: list[openai.OpenAI] = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line.rstrip())

    def client(self, key: str | None = KEY) -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.base_url, api_key=key or "none", max_retries=0)
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Closes the clients and ends the server, then lets the log reader reach the end of its output before
        Popen's exit closes the pipe under it."""
        for client in self._clients:
            client.close()
        self.process.terminate()
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)


@contextmanager
def serving(model: Path, basedir: Path, *extra: str) -> Iterator[Served]:
    port = free_port()
    command = [sys.executable, "-m", "localai_app", "--basedir", str(basedir), "serve", "--model", str(model)]
    command += ["--port", str(port), "--ctx", "512", "--threads", "2", *extra]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        assert process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        base_url = None
        while time.monotonic() < deadline and base_url is None:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"serve exited with {process.wait()}")
            if line.startswith("Serving "):
                base_url = line.rsplit(" at ", 1)[1].strip()
        assert base_url == f"http://127.0.0.1:{port}/v1"
        served = Served(process, base_url)
        try:
            yield served
        finally:
            served.close()


@pytest.fixture(scope="module")
def tiny_served(tiny_chat_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tiny_chat_model, tmp_path_factory.mktemp("serve"), "--api-key", KEY) as served:
        yield served


@pytest.fixture(scope="module")
def starter_served(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(starter_model, tmp_path_factory.mktemp("serve"), "--max-queue", "1") as served:
        yield served


def test_models_chat_and_completions_through_the_official_client(tiny_served: Served) -> None:
    client = tiny_served.client()
    assert [model.id for model in client.models.list()] == ["tiny-chat"]

    reply = client.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=8, seed=1, temperature=0
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 8

    stream = client.chat.completions.create(
        model="tiny-chat",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=8,
        seed=1,
        temperature=0,
        stream=True,
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed == reply.choices[0].message.content  # same seed, same text, streamed or not

    completion = client.completions.create(model="tiny-chat", prompt="abc", max_tokens=6, seed=2, stop=["\n"])
    assert completion.choices[0].finish_reason in ("stop", "length")
    pieces = client.completions.create(model="tiny-chat", prompt="abc", max_tokens=6, seed=2, stop=["\n"], stream=True)
    assert "".join(chunk.choices[0].text for chunk in pieces) == completion.choices[0].text


@pytest.mark.parametrize("chat", [True, False])
def test_the_python_snippet_runs_as_pasted(tiny_served: Served, chat: bool) -> None:
    code = snippets(tiny_served.base_url, KEY, "tiny-chat", chat=chat)["Python"]
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr  # the tiny model's text is noise; that the call worked is the point


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_snippet_runs_as_pasted(tiny_served: Served) -> None:
    command = snippets(tiny_served.base_url, KEY, "tiny-chat")["curl"]
    ran = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0 and json.loads(ran.stdout)["object"] == "chat.completion"


def test_logprobs_come_sorted_with_the_asked_number_of_alternatives(tiny_served: Served) -> None:
    reply = tiny_served.client().chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "x"}], max_tokens=5, logprobs=True, top_logprobs=3
    )
    assert reply.choices[0].logprobs is not None
    entries = reply.choices[0].logprobs.content or []
    assert entries
    for entry in entries:
        values = [alternative.logprob for alternative in entry.top_logprobs]
        assert len(values) == 3 and values == sorted(values, reverse=True) and entry.logprob <= 0


def test_a_json_schema_reply_parses_and_follows_the_schema(tiny_served: Served) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
        "additionalProperties": False,
    }
    reply = tiny_served.client().chat.completions.create(
        model="tiny-chat",
        messages=[{"role": "user", "content": "2+2?"}],
        max_tokens=200,
        seed=4,
        response_format={"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}},
    )
    parsed = json.loads(reply.choices[0].message.content or "")
    assert set(parsed) == {"answer", "sure"}
    assert isinstance(parsed["answer"], int) and isinstance(parsed["sure"], bool)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/models"),
        ("POST", "/chat/completions"),
        ("POST", "/completions"),
        ("GET", "/../health"),
        ("POST", "/../tokenize"),
        ("POST", "/../apply-template"),
    ],
)
def test_every_route_answers_401_without_the_key(tiny_served: Served, method: str, path: str) -> None:
    answer = httpx.request(method, tiny_served.base_url + path, json={"prompt": "x"}, timeout=10)
    assert answer.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        tiny_served.client(key="sk-wrong-key-0123456789").models.list()


def test_the_glass_box_routes_are_served_on_the_public_api_too(tiny_served: Served) -> None:
    root = tiny_served.base_url.removesuffix("/v1")  # llama-server has them at the root, beside /v1
    headers = {"Authorization": f"Bearer {KEY}"}
    tokens = httpx.post(root + "/tokenize", json={"content": "hi"}, headers=headers, timeout=10).json()["tokens"]
    back = httpx.post(root + "/detokenize", json={"tokens": tokens}, headers=headers, timeout=10).json()["content"]
    assert back.strip() == "hi"


def _deep_schema(depth: int) -> dict[str, object]:
    schema: dict[str, object] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"max_tokens": MAX_TOKENS + 1}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)}, "messages"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"n": 2}, "n"),
        ({"stop": ["a"] * 17}, "stop strings"),
        ({"temperature": -1}, "temperature"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tool calls"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": _deep_schema(20)}}}, "deeper"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {"enum": ["x" * MAX_SCHEMA_BYTES]}}}},
            "larger",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
    ],
)
def test_each_bounded_parameter_gets_a_400_in_openais_format(
    tiny_served: Served, change: dict[str, object], complaint: str
) -> None:
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, **change}
    with pytest.raises(openai.BadRequestError) as refused:
        tiny_served.client().chat.completions.create(**body)  # type: ignore[call-overload]
    assert complaint in str(refused.value)
    assert MAX_SCHEMA_DEPTH < 20


def test_an_oversized_body_is_refused_before_it_is_read(tiny_served: Served) -> None:
    answer = httpx.post(
        tiny_served.base_url + "/completions",
        content=b"{" + b" " * (17 * 1024 * 1024) + b"}",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 413


def test_a_foreign_host_gets_403_and_a_foreign_origin_no_cors_header(tiny_served: Served) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    rebound = httpx.get(tiny_served.base_url + "/models", headers={**headers, "Host": "attacker.example"})
    assert rebound.status_code == 403
    foreign = httpx.get(tiny_served.base_url + "/models", headers={**headers, "Origin": "https://attacker.example"})
    assert foreign.status_code == 200
    assert not [name for name in foreign.headers if name.lower().startswith("access-control-")]


def test_requests_are_logged_with_status_and_tokens(tiny_served: Served) -> None:
    tiny_served.client().completions.create(model="tiny-chat", prompt="log me", max_tokens=3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("POST /v1/completions  200" in line for line in tiny_served.log):
        time.sleep(0.05)
    line = next(line for line in reversed(tiny_served.log) if "POST /v1/completions  200" in line)
    assert "127.0.0.1" in line and "tokens" in line and line.endswith(" ms")


def _long_stream(served: Served) -> openai.Stream[openai.types.Completion]:
    return served.client().completions.create(
        model="gemma", prompt="Once upon a time", max_tokens=400, temperature=1.0, seed=5, stream=True
    )


def test_the_starter_completes_text_both_ways_and_says_why_it_cannot_chat(starter_served: Served) -> None:
    client = starter_served.client()
    asked = {"model": "gemma", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0.0, "seed": 1}
    whole = client.completions.create(**asked)  # type: ignore[call-overload]
    streamed = client.completions.create(**asked, stream=True)  # type: ignore[call-overload]
    assert "".join(chunk.choices[0].text for chunk in streamed) == whole.choices[0].text
    assert whole.choices[0].text.strip() and whole.usage is not None and whole.usage.completion_tokens == 8
    with pytest.raises(openai.BadRequestError, match="no chat template"):
        client.chat.completions.create(model="gemma", messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_past_the_queue_limit_clients_get_429_with_retry_after(starter_served: Served) -> None:
    generating = _long_stream(starter_served)
    next(iter(generating))  # its generation has begun
    waiting_result: list[object] = []
    waiter = threading.Thread(
        target=lambda: waiting_result.append(
            starter_served.client().completions.create(model="gemma", prompt="Hello", max_tokens=2)
        )
    )
    waiter.start()
    time.sleep(1.0)  # it is queued behind the generating one now
    answer = httpx.post(starter_served.base_url + "/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=30)
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.json()["error"]["type"] == "rate_limit_error"
    generating.close()
    waiter.join(timeout=60)
    assert waiting_result, "the queued request was served once the first left"


def test_a_client_that_leaves_mid_stream_stops_its_generation(starter_served: Served) -> None:
    # 400 tokens take this machine 5-40 s; the next request only waits for the abandoned one if it kept going.
    stream = _long_stream(starter_served)
    for _, _chunk in zip(range(3), stream, strict=False):
        pass
    stream.close()
    left_at = time.monotonic()
    starter_served.client().completions.create(model="gemma", prompt="Hi", max_tokens=1)
    assert time.monotonic() - left_at < 3.0


def test_a_client_that_gives_up_on_a_whole_reply_stops_its_generation(starter_served: Served) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            starter_served.base_url + "/completions",
            json={"prompt": "Once upon a time", "max_tokens": 400, "temperature": 1.0},
            timeout=httpx.Timeout(10, read=1.0),
        )
    left_at = time.monotonic()
    starter_served.client().completions.create(model="gemma", prompt="Hi", max_tokens=1)
    assert time.monotonic() - left_at < 3.0


def test_an_embedding_model_serves_unit_vectors_and_a_text_model_says_it_makes_none(
    tiny_served: Served, tiny_embedding_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(openai.BadRequestError, match="makes text, not embeddings"):
        tiny_served.client().embeddings.create(model="tiny-chat", input="hello")
    with serving(tiny_embedding_model, tmp_path, "--api-key", KEY) as served:
        client = served.client()
        # The client asks for base64 by default and decodes it; floats are asked for explicitly here.
        packed = client.embeddings.create(model="tiny-embed", input=["hello world", "hi"])
        plain = client.embeddings.create(model="tiny-embed", input=["hello world", "hi"], encoding_format="float")
        assert [item.index for item in packed.data] == [0, 1]
        for a, b in zip(packed.data, plain.data, strict=True):
            assert len(a.embedding) == 64
            assert abs(sum(value * value for value in a.embedding) - 1.0) < 1e-4
            assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding, strict=True)) < 1e-6
        assert packed.data[0].embedding != packed.data[1].embedding
        assert packed.usage.prompt_tokens > 0
        with pytest.raises(openai.BadRequestError, match="embedding model"):
            client.completions.create(model="tiny-embed", prompt="hi", max_tokens=2)
        with pytest.raises(openai.BadRequestError, match="64 dimensions"):
            client.embeddings.create(model="tiny-embed", input="hi", dimensions=8)


def test_serving_beyond_this_computer_without_a_key_is_refused(tiny_chat_model: Path, tmp_path: Path) -> None:
    refused = run_cli("serve", "--model", str(tiny_chat_model), "--host", "0.0.0.0", basedir=tmp_path)
    assert refused.returncode == 2
    assert "set an API key first" in refused.stderr and "Traceback" not in refused.stderr


def test_a_port_in_use_is_named_in_one_sentence(tiny_chat_model: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        refused = run_cli("serve", "--model", str(tiny_chat_model), "--port", port, basedir=tmp_path)
    assert refused.returncode == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in refused.stderr and "Traceback" not in refused.stderr
    assert os.environ.get("LOCALAI_SERVE_KEY") is None


def test_the_apps_own_reply_goes_ahead_of_queued_api_requests(app_paths: AppPaths, starter_model: Path) -> None:
    manager = manager_for(app_paths, Overrides(context=2048, threads=2))
    manager.serve = ServeOptions(port=free_port())
    reports: list[RequestRecord] = []
    manager.on_request = reports.append
    model = Library(app_paths).find(str(starter_model))
    finished: list[str] = []
    try:
        manager.load(model)
        assert manager.serving_url == manager.serve.base_url
        api = openai.OpenAI(base_url=manager.serving_url, api_key="none", max_retries=0)
        generating = api.completions.create(model="m", prompt="Once upon a time", max_tokens=400, stream=True)
        next(iter(generating))

        def ask_api(name: str) -> None:
            api.completions.create(model="m", prompt=f"Note {name}:", max_tokens=20)
            finished.append(name)

        queued = [threading.Thread(target=ask_api, args=(name,)) for name in ("api-1", "api-2")]
        for thread in queued:
            thread.start()
        time.sleep(1.0)  # both wait behind the generating request now
        own = list(manager.stream(model, "Hello", SamplingOptions(max_tokens=2)))
        finished.append("app")
        assert isinstance(own[-1], ReplyStats)
        generating.close()
        for thread in queued:
            thread.join(timeout=120)
        assert finished == ["app", "api-1", "api-2"]
        api.close()
    finally:
        manager.shutdown()
    assert [record.path for record in reports if record.status == 200].count("/v1/completions") == 3


def test_every_answered_request_is_reported_by_the_time_shutdown_returns(
    app_paths: AppPaths, tiny_chat_model: Path
) -> None:
    manager = manager_for(app_paths, Overrides(context=512, threads=1))
    manager.serve = ServeOptions(port=free_port())
    reports: list[RequestRecord] = []

    def slow_listener(record: RequestRecord) -> None:
        time.sleep(0.3)  # a listener slower than the engine (a busy GUI) leaves reports queued at shutdown
        reports.append(record)

    manager.on_request = slow_listener
    try:
        manager.load(Library(app_paths).find(str(tiny_chat_model)))
        assert manager.serving_url is not None
        with openai.OpenAI(base_url=manager.serving_url, api_key="none", max_retries=0) as api:
            for _ in range(3):
                api.completions.create(model="m", prompt="count me", max_tokens=2)
    finally:
        manager.shutdown()
    assert [record.path for record in reports] == ["/v1/completions"] * 3
