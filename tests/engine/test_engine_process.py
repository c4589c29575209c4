"""The engine as a real child process running real llama.cpp on a tiny GGUF."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localai_app.core.client import EngineClient
from localai_app.core.engine_process import EngineEndpoint, EngineOptions, EngineProcess
from localai_app.core.errors import EngineError
from localai_app.core.replies import Delta, ReplyStats, SamplingOptions


@pytest.fixture(scope="module")
def chat_engine(tiny_chat_model: Path) -> Iterator[tuple[EngineProcess, EngineEndpoint]]:
    process = EngineProcess(tiny_chat_model, EngineOptions(context_length=512, threads=1))
    endpoint = process.start()
    yield process, endpoint
    process.stop()


@pytest.fixture
def client(chat_engine: tuple[EngineProcess, EngineEndpoint]) -> Iterator[EngineClient]:
    endpoint = chat_engine[1]
    client = EngineClient(endpoint.base_url, endpoint.token)
    yield client
    client.close()


def test_handshake_reports_port_and_model(chat_engine: tuple[EngineProcess, EngineEndpoint]) -> None:
    process, endpoint = chat_engine
    assert endpoint.base_url.startswith("http://127.0.0.1:")
    assert endpoint.model["has_chat_template"] is True
    assert endpoint.model["context_length"] == 512
    assert process.is_alive()


def test_every_route_needs_the_token(chat_engine: tuple[EngineProcess, EngineEndpoint]) -> None:
    endpoint = chat_engine[1]
    for path in ("/health", "/v1/models"):
        assert httpx.get(endpoint.base_url + path).status_code == 401
        wrong = httpx.get(endpoint.base_url + path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    assert httpx.post(endpoint.base_url + "/v1/completions", json={"prompt": "x"}).status_code == 401


def test_health_and_models(client: EngineClient) -> None:
    assert client.health()["status"] == "ok"
    (model,) = client.models()
    assert model["id"] == "tiny-chat.gguf" and model["meta"]["vocabulary_size"] == 260


def test_streamed_completion_is_reproducible_with_a_seed(client: EngineClient) -> None:
    sampling = SamplingOptions(max_tokens=12, temperature=1.0, seed=5)
    runs = [list(client.stream_completion("Hello", sampling)) for _ in range(2)]
    deltas = [[event for event in run if isinstance(event, Delta)] for run in runs]
    assert len(deltas[0]) > 1  # streamed in pieces, not one block
    assert "".join(d.text for d in deltas[0]) == "".join(d.text for d in deltas[1])
    stats = runs[0][-1]
    assert isinstance(stats, ReplyStats)
    assert stats.completion_tokens == 12 and stats.finish_reason == "length"
    assert stats.tokens_per_second > 0 and stats.ttft_ms > 0


def test_tokenize_counts_text_and_rendered_chat_against_the_context(
    client: EngineClient, chat_engine: tuple[EngineProcess, EngineEndpoint]
) -> None:
    text_tokens, context = client.count_tokens("Hello")
    assert context == 512 and text_tokens >= len("Hello")  # byte-level vocabulary: a token per byte at least
    chat_tokens, _ = client.count_tokens([{"role": "user", "content": "Hello"}])
    assert chat_tokens > text_tokens + len("<|im_start|>user")  # the template's markers count too
    endpoint = chat_engine[1]
    headers = {"Authorization": f"Bearer {endpoint.token}"}
    neither = httpx.post(f"{endpoint.base_url}/v1/tokenize", json={}, headers=headers)
    assert neither.status_code == 400 and "either prompt or messages" in neither.json()["error"]["message"]


def test_a_chat_ending_with_a_reply_continues_that_reply(client: EngineClient) -> None:
    def prompt_tokens(messages: list[dict[str, str]]) -> int:
        *_, stats = client.stream_chat(messages, SamplingOptions(max_tokens=2, temperature=0.0))
        assert isinstance(stats, ReplyStats)
        return stats.prompt_tokens

    question = [{"role": "user", "content": "Hi"}]
    fresh = prompt_tokens(question)
    continued = prompt_tokens([*question, {"role": "assistant", "content": "Hello"}])
    # The prompt stops inside the reply: its 5 bytes more, with no end-of-turn marker and no new assistant turn.
    assert continued - fresh == len("Hello")


def test_top_k_reaches_the_sampler(client: EngineClient) -> None:
    def text(top_k: int, seed: int) -> str:
        sampling = SamplingOptions(max_tokens=12, temperature=1.5, top_p=1.0, min_p=0.0, top_k=top_k, seed=seed)
        return "".join(event.text for event in client.stream_completion("Hello", sampling) if isinstance(event, Delta))

    # With only the most likely token allowed, the seed no longer matters; with all of them, it does.
    assert text(top_k=1, seed=1) == text(top_k=1, seed=2) == text(top_k=1, seed=3)
    assert len({text(top_k=0, seed=seed) for seed in (1, 2, 3)}) > 1


def test_chat_uses_the_models_template_and_returns_logprobs(client: EngineClient) -> None:
    sampling = SamplingOptions(max_tokens=5, temperature=0.0, top_logprobs=3)
    events = list(client.stream_chat([{"role": "user", "content": "Hi"}], sampling))
    probabilities = [p for event in events if isinstance(event, Delta) for p in event.probabilities]
    assert len(probabilities) == 5
    for probability in probabilities:
        assert probability.logprob <= 0
        assert len(probability.alternatives) == 3
        # Greedy decoding picks the most likely token, so it must head the alternatives.
        assert probability.alternatives[0][1] == pytest.approx(probability.logprob, abs=1e-5)
    stats = events[-1]
    assert isinstance(stats, ReplyStats) and stats.prompt_tokens > 10


def test_non_streamed_completion_with_logprobs_is_plain_json(
    chat_engine: tuple[EngineProcess, EngineEndpoint],
) -> None:
    endpoint = chat_engine[1]
    response = httpx.post(
        endpoint.base_url + "/v1/completions",
        headers={"Authorization": f"Bearer {endpoint.token}"},
        json={"prompt": "Hello", "max_tokens": 4, "logprobs": 2, "seed": 1},
    )
    document = response.json()
    choice = document["choices"][0]
    assert len(choice["logprobs"]["token_logprobs"]) == 4
    assert all(len(top) <= 2 for top in choice["logprobs"]["top_logprobs"])
    assert document["usage"]["completion_tokens"] == 4
    json.dumps(document)  # every number is a plain JSON number


def test_stop_mid_stream_frees_the_engine_for_the_next_request(client: EngineClient) -> None:
    stream = client.stream_completion("Once", SamplingOptions(max_tokens=400, temperature=1.0))
    assert isinstance(next(stream), Delta)
    stream.close()
    started = time.monotonic()
    events = list(client.stream_completion("Again", SamplingOptions(max_tokens=3, seed=1)))
    # The first request was cancelled at its next token, not run to its 400 tokens.
    assert time.monotonic() - started < 5
    assert isinstance(events[-1], ReplyStats) and events[-1].completion_tokens == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "temperature": -1}, "temperature"),
        ({"messages": []}, "prompt"),
        ({"prompt": "x", "stop": ["s"] * 40}, "stop strings"),
    ],
)
def test_bad_requests_get_openai_style_errors(
    chat_engine: tuple[EngineProcess, EngineEndpoint], body: dict[str, object], message: str
) -> None:
    endpoint = chat_engine[1]
    response = httpx.post(
        endpoint.base_url + "/v1/completions", headers={"Authorization": f"Bearer {endpoint.token}"}, json=body
    )
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_base_model_refuses_chat_instead_of_guessing_a_format(tiny_model: Path) -> None:
    process = EngineProcess(tiny_model, EngineOptions(threads=1))
    endpoint = process.start()
    client = EngineClient(endpoint.base_url, endpoint.token)
    try:
        with pytest.raises(EngineError, match="no chat template"):
            list(client.stream_chat([{"role": "user", "content": "hi"}], SamplingOptions(max_tokens=2)))
        assert [e for e in client.stream_completion("hi", SamplingOptions(max_tokens=2)) if isinstance(e, Delta)]
    finally:
        client.close()
        process.stop()


def test_closing_stdin_ends_the_engine(tiny_model: Path) -> None:
    process = EngineProcess(tiny_model, EngineOptions(threads=1))
    process.start()
    pid = process.pid
    assert pid is not None
    process.stop(grace=10)
    assert not process.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_bad_files_fail_with_a_sentence(tmp_path: Path, tiny_model: Path) -> None:
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(tiny_model.read_bytes()[:200_000])
    for path, words in ((truncated, "truncated"), (tmp_path / "missing.gguf", "does not exist")):
        with pytest.raises(EngineError, match=words) as raised:
            EngineProcess(path, EngineOptions()).start()
        assert raised.value.kind == "bad_file"


def test_a_killed_engine_is_explained(tiny_model: Path) -> None:
    process = EngineProcess(tiny_model, EngineOptions(threads=1))
    process.start()
    assert process.pid is not None
    assert process.is_alive(settle=0.2)  # still running: waits the whole settle time, then says so
    os.kill(process.pid, signal.SIGKILL)
    assert not process.is_alive(settle=5.0)  # the exit shows within the settle time, not only after it
    fault = process.fault()
    process.stop()
    assert fault.kind == "killed" and "was killed" in fault.sentence


def test_logprob_bytes_are_the_tokens_own_bytes(chat_engine: tuple[EngineProcess, EngineEndpoint]) -> None:
    """A token can hold part of a UTF-8 character: its text shows U+FFFD, its bytes must be the real ones."""
    endpoint = chat_engine[1]
    response = httpx.post(
        endpoint.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {endpoint.token}"},
        json={
            "messages": [{"role": "user", "content": "Grüße, café, 東京"}],
            "max_tokens": 48,
            "temperature": 1.5,
            "seed": 7,
            "logprobs": True,
            "top_logprobs": 2,
        },
    )
    choice = response.json()["choices"][0]
    entries = choice["logprobs"]["content"]
    joined = b"".join(bytes(entry["bytes"]) for entry in entries)
    assert any(byte >= 0x80 for byte in joined), "the sample should include bytes of multi-byte characters"
    assert joined.decode("utf-8", errors="replace") == choice["message"]["content"]
    for entry in entries:
        for alternative in entry["top_logprobs"]:
            assert bytes(alternative["bytes"]).decode("utf-8", errors="replace") == alternative["token"]
