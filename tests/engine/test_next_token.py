"""llama-server's native /completion on the tiny chat model: its shape, a prompt of token ids, its bounds, seeds
that reproduce a reply, and the sampling lab's worked-out distribution checked against what the engine draws."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from localai_app.core import sampling
from localai_app.core.client import EngineClient
from localai_app.core.conversations import ChatSettings
from localai_app.core.errors import RouteUnavailableError
from localai_app.core.replies import SamplingOptions
from localai_app.core.sampling import apply_sampler
from localai_app.engine.protocol import MAX_N_PROBS, MAX_TOKEN_IDS
from tests.conftest import engine_client
from tests.engine.test_glass_box import MESSAGES, _post, check_against_raw_logits

SEEDS = range(1, 41)


@pytest.fixture(scope="module")
def client(tiny_chat_model: Path) -> Iterator[EngineClient]:
    with engine_client(tiny_chat_model) as client:
        yield client


@pytest.fixture(scope="module")
def prompt_ids(client: EngineClient) -> list[int]:
    return client.tokenize(client.apply_template(MESSAGES), with_pieces=False)


def test_the_answer_has_llama_servers_shape(client: EngineClient, prompt_ids: list[int]) -> None:
    body = {"prompt": prompt_ids, "n_predict": 3, "n_probs": 4, "temperature": 0, "return_tokens": True}
    answer = _post(client, "/completion", body)
    assert answer.status_code == 200
    document = answer.json()
    assert document["stop"] is True and document["stop_type"] in ("limit", "eos")
    assert document["tokens_evaluated"] == len(prompt_ids)
    entries = document["completion_probabilities"]
    assert [entry["id"] for entry in entries] == document["tokens"]
    first = entries[0]
    assert set(first) == {"id", "token", "logprob", "bytes", "top_logprobs"}
    assert bytes(first["bytes"]).decode("utf-8", errors="replace") == first["token"]
    assert len(first["top_logprobs"]) == 4
    assert set(first["top_logprobs"][0]) == {"id", "token", "logprob", "bytes"}
    # Greedy: the token drawn is the likeliest.
    assert first["id"] == first["top_logprobs"][0]["id"]
    # Without n_probs the answer has no probabilities, as llama-server's; without return_tokens, no ids.
    plain = _post(client, "/completion", {"prompt": prompt_ids, "n_predict": 2}).json()
    assert "completion_probabilities" not in plain and plain["tokens"] == []


def test_token_ids_and_text_prompts_give_the_same_probabilities_as_the_raw_logits(
    client: EngineClient, prompt_ids: list[int], tiny_chat_model: Path
) -> None:
    greedy = SamplingOptions(temperature=0.0)
    by_ids = client.next_tokens(prompt_ids, greedy, count=4, alternatives=5)
    # Text is read as llama-server reads it (BOS added, special tokens parsed): the same ids as the template's
    # prompt tokenized that way.
    text = client.apply_template(MESSAGES)
    as_text_ids = client.tokenize(text, with_pieces=False, add_special=True)
    by_text = client.next_tokens(text, greedy, count=4, alternatives=5)
    by_text_ids = client.next_tokens(as_text_ids, greedy, count=4, alternatives=5)
    assert [token.id for token in by_text.tokens] == [token.id for token in by_text_ids.tokens]
    for left, right in zip(by_text.tokens, by_text_ids.tokens, strict=True):
        assert abs(left.logprob - right.logprob) < 1e-4  # a cached prefix is evaluated in other batches
    check_against_raw_logits(tiny_chat_model, prompt_ids, by_ids.tokens[:4], top=5)
    # Going on from the ids generated so far gives the next token exactly: what step mode does one press at a time.
    first = client.next_tokens(prompt_ids, greedy, count=1, alternatives=5).tokens[0]
    assert first.id is not None
    second = client.next_tokens([*prompt_ids, first.id], greedy, count=1, alternatives=5).tokens[0]
    assert [first.id, second.id] == [token.id for token in by_ids.tokens[:2]]
    assert abs(second.logprob - by_ids.tokens[1].logprob) < 1e-4


def test_a_seed_reproduces_a_reply_and_other_seeds_change_it(client: EngineClient, prompt_ids: list[int]) -> None:
    def reply(seed: int) -> str:
        sampling = SamplingOptions(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=seed)
        return client.next_tokens(prompt_ids, sampling, count=12, alternatives=0).text

    assert reply(7) == reply(7)
    assert len({reply(seed) for seed in range(1, 9)}) > 1


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingOptions(),  # the conversation's defaults: temperature 0.7, top-k 40, top-p 0.95, min-p 0.05
        SamplingOptions(temperature=1.5, top_k=5, top_p=1.0, min_p=0.0),
        SamplingOptions(temperature=1.0, top_k=40, top_p=0.5, min_p=0.0),
        SamplingOptions(temperature=2.0, top_k=40, top_p=1.0, min_p=0.2),
    ],
)
def test_every_token_the_engine_draws_is_one_the_lab_says_can_be_drawn(
    client: EngineClient, prompt_ids: list[int], sampling: SamplingOptions
) -> None:
    position = client.next_tokens(prompt_ids, sampling, count=1, alternatives=MAX_N_PROBS).tokens[0]
    lab = apply_sampler(position.alternatives, sampling)
    assert not lab.open_tail
    drawable = {candidate.choice.id for candidate in lab.drawable}
    drawn = set()
    for seed in SEEDS:
        token = client.next_tokens(prompt_ids, replace(sampling, seed=seed), count=1, alternatives=0).ids[0]
        assert token in drawable, f"seed {seed} drew token {token}, which the lab says was cut"
        drawn.add(token)
    if len(drawable) > 1 and max(candidate.after for candidate in lab.drawable) < 0.9:
        assert len(drawn) > 1  # the seeds do change the draw


def test_top_k_1_always_draws_the_likeliest(client: EngineClient, prompt_ids: list[int]) -> None:
    alternatives = client.next_tokens(prompt_ids, SamplingOptions(), count=1, alternatives=10).tokens[0].alternatives
    lab = apply_sampler(alternatives, SamplingOptions(temperature=5.0, top_k=1, top_p=1.0, min_p=0.0))
    assert [candidate.choice.id for candidate in lab.drawable] == [alternatives[0].id]
    for seed in SEEDS:
        sampling = SamplingOptions(temperature=5.0, top_k=1, top_p=1.0, min_p=0.0, seed=seed)
        assert client.next_tokens(prompt_ids, sampling, count=1, alternatives=0).ids == [alternatives[0].id]


def test_the_end_token_is_reported_with_its_probability(client: EngineClient, prompt_ids: list[int]) -> None:
    # The tiny model's weights are random: with nothing cut, some of these seeds draw its end token within 100.
    sampling = SamplingOptions(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    answers = [
        client.next_tokens(prompt_ids, replace(sampling, seed=seed), count=100, alternatives=3) for seed in range(1, 9)
    ]
    ended = [answer for answer in answers if answer.ended]
    assert ended and len(ended) < len(answers)
    for answer in ended:
        # Reported as llama-server does: the last token, with empty text and its probability there.
        assert answer.tokens[-1].token == "" and answer.ids[-1] == answer.tokens[-1].id
        assert 0 < answer.tokens[-1].probability < 1
    for answer in answers:
        assert len(answer.ids) == len(answer.tokens) == (len(answer.ids) if answer.ended else 100)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"prompt": [1], "n_probs": MAX_N_PROBS + 1}, "n_probs"),
        ({"prompt": [1], "n_predict": 0}, "n_predict 0"),
        ({"prompt": [1], "n_predict": -2}, "n_predict"),
        ({"prompt": [0] * (MAX_TOKEN_IDS + 1)}, "prompt"),
        ({"prompt": [1, 260]}, "token id 260 is not in this model's vocabulary"),
        ({"prompt": []}, "the prompt is empty"),
        ({"prompt": ["a"]}, "prompt"),
        ({"prompt": [1], "post_sampling_probs": True}, "post_sampling_probs"),
        ({"prompt": [1], "stream": True}, "stream"),
        ({"prompt": [1], "temperature": -1}, "temperature"),
    ],
)
def test_bounds_give_400(client: EngineClient, body: object, complaint: str) -> None:
    answer = _post(client, "/completion", body)
    assert answer.status_code == 400
    assert complaint in answer.json()["error"]["message"]


def test_a_server_without_the_route_gets_one_sentence(llama_cpp_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    client = EngineClient(llama_cpp_server[0], None, label="the server tiny-box")
    try:
        with pytest.raises(RouteUnavailableError) as missing:
            client.next_tokens("Hello", SamplingOptions(), count=1, alternatives=5)
        assert str(missing.value) == (
            "The server tiny-box does not offer /completion, so the next token's probabilities cannot be shown."
        )
    finally:
        client.close()


def test_a_conversation_longer_than_the_context_is_fitted_as_a_reply_would_be(client: EngineClient) -> None:
    """The lab and step mode read what Send would send: the oldest turns left out, not the engine's refusal."""
    turns = [
        {"role": "user" if number % 2 == 0 else "assistant", "content": f"Turn {number}: " + "words " * 40}
        for number in range(20)
    ]
    conversation = [*turns, {"role": "user", "content": "And now?"}]
    ids = sampling.prompt_ids(client, conversation, ChatSettings(max_tokens=64))
    whole = client.tokenize(client.apply_template(conversation), with_pieces=False)
    assert len(whole) > 512  # the engine's context
    assert len(ids) <= 512 - 64  # room kept for the reply
    assert ids[-12:] == whole[-12:]  # the newest turn is there, as the template ends it
    assert client.next_tokens(ids, SamplingOptions(seed=1), count=1, alternatives=3).ids
