"""The glass box's engine side on tiny models: llama-server's /tokenize, /detokenize and /apply-template, and token
probabilities checked against llama.cpp's own raw logits."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import llama_cpp
import numpy as np
import pytest

from localai_app.core.client import EngineClient
from localai_app.core.engine_process import EngineOptions, EngineProcess
from localai_app.core.errors import EngineError, RouteUnavailableError
from localai_app.core.replies import Delta, ReplyStats, SamplingOptions, TokenProbability
from localai_app.engine.protocol import MAX_PROMPT_CHARS, MAX_TOKEN_IDS
from tests.conftest import engine_client

TOLERANCE = 1e-4
TOP = 5
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def chat_client(tiny_chat_model: Path) -> Iterator[EngineClient]:
    with engine_client(tiny_chat_model) as client:
        yield client


@pytest.fixture(scope="module")
def base_client(tiny_model: Path) -> Iterator[EngineClient]:
    with engine_client(tiny_model) as client:
        yield client


def _post(client: EngineClient, path: str, body: object) -> httpx.Response:
    return client._http.post(path, json=body)  # raw, to see the wire shapes and status codes


def _reply(events: Iterator[Delta | ReplyStats]) -> tuple[list[TokenProbability], ReplyStats]:
    collected = list(events)
    stats = collected[-1]
    assert isinstance(stats, ReplyStats)
    return [p for event in collected if isinstance(event, Delta) for p in event.probabilities], stats


def check_against_raw_logits(
    model: Path, prompt_ids: list[int], generated: list[TokenProbability], top: int = TOP
) -> None:
    """Each reported probability equals the softmax of llama.cpp's logits for that position (with logits_all, in
    this process), the alternatives are the likeliest tokens, sorted, and sum to at most 1."""
    raw = llama_cpp.Llama(str(model), n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    try:
        # As the engine does: the prompt in one pass, then one decode step per generated token.
        raw.eval(prompt_ids)
        for token in generated[:-1]:
            assert token.id is not None
            raw.eval([token.id])
        rows = np.asarray(raw.scores[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(generated)], dtype=np.float64)
    finally:
        raw.close()
    assert len(generated) >= 2
    for row, token in zip(rows, generated, strict=True):
        probabilities = np.exp(row - row.max())
        probabilities /= probabilities.sum()
        assert token.id is not None
        assert abs(token.probability - probabilities[token.id]) <= TOLERANCE
        # Greedy: the chosen token is the likeliest one.
        assert probabilities[token.id] >= probabilities.max() - TOLERANCE
        alternatives = [alt.probability for alt in token.alternatives]
        assert len(alternatives) == top and alternatives == sorted(alternatives, reverse=True)
        assert sum(alternatives) <= 1 + 1e-6
        for alt in token.alternatives:
            assert alt.id is not None and abs(alt.probability - probabilities[alt.id]) <= TOLERANCE
        outside = np.sort(probabilities)[-top - 1]  # the likeliest token left out
        assert alternatives[-1] >= outside - TOLERANCE


def test_chat_probabilities_match_raw_logits_for_the_prompt_the_template_route_shows(
    chat_client: EngineClient, tiny_chat_model: Path
) -> None:
    prompt = chat_client.apply_template(MESSAGES)
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and prompt.endswith("assistant\n")
    prompt_ids = chat_client.tokenize(prompt, with_pieces=False)
    sampling = SamplingOptions(max_tokens=6, temperature=0.0, top_logprobs=TOP)
    generated, stats = _reply(chat_client.stream_chat(MESSAGES, sampling))
    # What the template route shows, tokenized as llama-server's /tokenize does by default, is what the engine fed
    # llama.cpp: the same count, and (through the logits) the same tokens.
    assert stats.prompt_tokens == len(prompt_ids)
    check_against_raw_logits(tiny_chat_model, prompt_ids, generated)
    # Byte for byte, but for the space SentencePiece puts before a text (this vocabulary's ▁), which the model
    # does see: the tokens show it.
    assert chat_client.detokenize(prompt_ids) == " " + prompt


def test_completion_probabilities_match_raw_logits_for_a_model_without_a_template(
    base_client: EngineClient, tiny_model: Path
) -> None:
    with pytest.raises(EngineError, match="has no chat template"):
        base_client.apply_template(MESSAGES)
    text = "Once upon a time"
    # Plain text is read with BOS added and look-alike special tokens kept as text: the inspector's plain prompt.
    prompt_ids = base_client.tokenize(text, with_pieces=False, add_special=True, parse_special=False)
    generated, stats = _reply(
        base_client.stream_completion(text, SamplingOptions(max_tokens=6, temperature=0.0, top_logprobs=TOP))
    )
    assert stats.prompt_tokens == len(prompt_ids)
    check_against_raw_logits(tiny_model, prompt_ids, generated)


def test_tokenize_and_detokenize_have_llama_servers_shapes(chat_client: EngineClient) -> None:
    plain = _post(chat_client, "/tokenize", {"content": "Hi é"}).json()
    assert set(plain) == {"tokens"} and all(isinstance(token, int) for token in plain["tokens"])
    pieces = _post(chat_client, "/tokenize", {"content": "Hi é", "with_pieces": True}).json()["tokens"]
    assert [entry["id"] for entry in pieces] == plain["tokens"]
    # The tiny vocabulary has single bytes only: é is two tokens, each a part of a UTF-8 character, sent as bytes.
    assert pieces[-2:] == [{"id": pieces[-2]["id"], "piece": [0xC3]}, {"id": pieces[-1]["id"], "piece": [0xA9]}]
    assert "".join(entry["piece"] for entry in pieces[:-2]).strip() == "Hi"
    with_bos = _post(chat_client, "/tokenize", {"content": "Hi", "add_special": True}).json()["tokens"]
    assert len(with_bos) == len(_post(chat_client, "/tokenize", {"content": "Hi"}).json()["tokens"]) + 1

    # parse_special decides whether a written special token is the token or its characters.
    special = _post(chat_client, "/tokenize", {"content": "<s>"}).json()["tokens"]
    literal = _post(chat_client, "/tokenize", {"content": "<s>", "parse_special": False}).json()["tokens"]
    assert len(special) < len(literal)

    assert _post(chat_client, "/detokenize", {"tokens": plain["tokens"]}).json() == {"content": " Hi é"}
    client_pieces = chat_client.tokenize("Hi é")
    assert client_pieces[-1] == (pieces[-1]["id"], b"\xa9") and client_pieces[1] == (pieces[1]["id"], "H")
    assert _post(chat_client, "/apply-template", {"messages": MESSAGES}).json() == {
        "prompt": chat_client.apply_template(MESSAGES)
    }


@pytest.mark.parametrize(
    ("path", "body", "complaint"),
    [
        ("/tokenize", {"content": "x" * (MAX_PROMPT_CHARS + 1)}, "content"),
        ("/tokenize", {}, "content"),
        ("/detokenize", {"tokens": [0] * (MAX_TOKEN_IDS + 1)}, "tokens"),
        ("/detokenize", {"tokens": [1, 260]}, "token id 260 is not in this model's vocabulary"),
        ("/detokenize", {"tokens": [-1]}, "token id -1"),
        ("/detokenize", {"tokens": ["a"]}, "tokens.0"),
        ("/apply-template", {"messages": []}, "messages"),
        ("/apply-template", {"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
    ],
)
def test_bounds_give_400(chat_client: EngineClient, path: str, body: object, complaint: str) -> None:
    answer = _post(chat_client, path, body)
    assert answer.status_code == 400
    assert complaint in answer.json()["error"]["message"]


def test_a_server_without_the_routes_gets_one_sentence(llama_cpp_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    client = EngineClient(llama_cpp_server[0], None, label="the server tiny-box")
    try:
        with pytest.raises(RouteUnavailableError) as missing:
            client.tokenize("hello")
        assert str(missing.value) == "The server tiny-box does not offer /tokenize, so its tokens cannot be shown."
        with pytest.raises(RouteUnavailableError, match=r"^The server tiny-box does not offer /detokenize, "):
            client.detokenize([1, 2])
        with pytest.raises(RouteUnavailableError, match=r"^The server tiny-box does not offer /apply-template, "):
            client.apply_template(MESSAGES)
    finally:
        client.close()


def test_a_vocabulary_only_engine_tokenizes_as_the_full_one_and_refuses_to_generate(
    chat_client: EngineClient, tiny_chat_model: Path
) -> None:
    process = EngineProcess(tiny_chat_model, EngineOptions(context_length=512, threads=1, vocab_only=True))
    endpoint = process.start()
    client = EngineClient(endpoint.base_url, endpoint.token)
    try:
        assert client.tokenize("Hi <s> é") == chat_client.tokenize("Hi <s> é")
        assert client.apply_template(MESSAGES) == chat_client.apply_template(MESSAGES)
        with pytest.raises(EngineError, match="loaded for its vocabulary only: it tokenizes, nothing more"):
            list(client.stream_completion("Hi", SamplingOptions(max_tokens=2)))
        assert process.is_alive()  # refused, not crashed on weights it does not have
    finally:
        client.close()
        process.stop()
