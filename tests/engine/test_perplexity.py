"""Perplexity through the engine's /v1/perplexity route, checked against a direct computation with
llama-cpp-python (logits_all=True, in this process) by llama.cpp's method: windows of 512 tokens, BOS first,
the second half of each window scored."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from localai_app.core.bench_requests import BenchCancelledError
from localai_app.core.client import EngineClient
from localai_app.core.errors import EngineError
from localai_app.core.quality import WINDOW, load_text, perplexity
from localai_app.core.replies import ReplyStats, SamplingOptions
from tests.conftest import engine_client

# The tiny model reads one byte a token: this is three windows of 512 and a remainder.
LONG_TEXT = " ".join(f"line {number}: the quick brown fox jumps over the lazy dog." for number in range(30))
SHORT_TEXT = "A text shorter than one window."


@pytest.fixture(scope="module")
def tiny_client(tiny_model: Path) -> Iterator[EngineClient]:
    with engine_client(tiny_model, context_length=WINDOW, threads=2) as client:
        yield client


def direct_perplexity(model: Path, text: str) -> tuple[float, int]:
    """The same method written out against llama-cpp-python: every position's logits kept (logits_all), each
    window evaluated from an empty cache, -log softmax of each next token in the second half summed."""
    llama = llama_cpp.Llama(str(model), n_ctx=WINDOW, n_threads=2, logits_all=True, verbose=False)
    try:
        tokens = llama.tokenize(text.encode(), add_bos=True, special=False)
        adds_bos = bool(llama_cpp.llama_vocab_get_add_bos(llama._model.vocab))
        size = min(WINDOW, len(tokens))
        nll, count = 0.0, 0
        for start in range(0, len(tokens) - size + 1, size):
            window = tokens[start : start + size]
            if adds_bos:
                window[0] = llama.token_bos()
            llama.n_tokens = 0  # eval() then starts at position 0, clearing the cache from there
            llama.eval(window)
            logits = np.asarray(llama.scores[:size], dtype=np.float64)
            for position in range(size // 2, size - 1):
                row = logits[position]
                log_total = row.max() + math.log(np.exp(row - row.max()).sum())
                nll -= row[window[position + 1]] - log_total
                count += 1
    finally:
        llama.close()
    return math.exp(nll / count), count


@pytest.mark.starter
def test_starter_perplexity_matches_a_direct_computation(starter_model: Path) -> None:
    text = load_text()
    with engine_client(starter_model, context_length=2048, threads=2) as client:
        started = time.perf_counter()
        measured, scored = perplexity(client, text)
        print(f"starter perplexity {measured:.4f} over {scored} tokens in {time.perf_counter() - started:.2f} s")
    expected, count = direct_perplexity(starter_model, text)
    assert scored == count
    assert scored >= 4 * (WINDOW // 2 - 1)  # the bundled text is at least four windows for Gemma's tokenizer
    assert measured == pytest.approx(expected, rel=0.01)


def test_tiny_model_perplexity_over_several_windows_matches(tiny_client: EngineClient, tiny_model: Path) -> None:
    measured, scored = perplexity(tiny_client, LONG_TEXT)
    expected, count = direct_perplexity(tiny_model, LONG_TEXT)
    assert scored == count == 3 * (WINDOW // 2 - 1)
    assert math.isfinite(measured) and measured > 1
    assert measured == pytest.approx(expected, rel=0.01)


def test_a_text_shorter_than_one_window_is_scored_as_one_window(tiny_client: EngineClient, tiny_model: Path) -> None:
    measured, scored = perplexity(tiny_client, SHORT_TEXT)
    expected, count = direct_perplexity(tiny_model, SHORT_TEXT)
    tokens = len(tiny_client.tokenize(SHORT_TEXT, with_pieces=False, add_special=True))
    assert tokens < WINDOW
    assert scored == count == tokens - (tokens // 2 + 1)  # the second half, as in a whole window
    assert measured == pytest.approx(expected, rel=0.01)


def test_scoring_leaves_generation_as_it_was(tiny_client: EngineClient) -> None:
    """Scoring overwrites the cache that generation reuses: a reply after it is the reply before it."""
    greedy = SamplingOptions(max_tokens=24, temperature=0.0, seed=1)

    def reply() -> str:
        return "".join(
            event.text for event in tiny_client.stream("Once upon a time", greedy) if not isinstance(event, ReplyStats)
        )

    before = reply()
    perplexity(tiny_client, LONG_TEXT)
    assert reply() == before


def test_cancel_stops_between_windows(tiny_client: EngineClient) -> None:
    cancel = threading.Event()
    messages: list[str] = []

    def progress(fraction: float, message: str) -> None:
        messages.append(message)
        cancel.set()  # while the first window is about to be scored

    with pytest.raises(BenchCancelledError):
        perplexity(tiny_client, LONG_TEXT, cancel=cancel, progress=progress)
    assert messages == ["perplexity: window 1 of 3"]
    assert perplexity(tiny_client, SHORT_TEXT)[1] > 0  # the engine serves the next request


@pytest.mark.parametrize(
    ("tokens", "predict_from", "error"),
    [
        ([1, 5, 6], 3, "predict_from must be between 1 and 2"),
        ([1] * (WINDOW + 1), 10, "more than the 512-token context"),
        ([1, 99999], 1, "not in this model's vocabulary"),
        ([1], 1, "tokens"),
    ],
)
def test_the_route_refuses_what_it_cannot_score(
    tiny_client: EngineClient, tokens: list[int], predict_from: int, error: str
) -> None:
    with pytest.raises(EngineError, match=error):
        tiny_client.token_logprobs(tokens, predict_from)
