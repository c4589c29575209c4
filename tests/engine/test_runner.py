"""The runner in-process on the tiny model: a prompt pass that Stop can interrupt, and cache reuse that never
changes a reply."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from localai_app.engine.runner import PREFILL_CHUNK, Finished, RequestError, Runner, Sampling, TextPiece


class _StopAfter(threading.Event):
    """Reads as set from its (n+1)-th check on: Stop pressed part-way through a prompt pass, deterministically."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self._left = checks

    def is_set(self) -> bool:
        self._left -= 1
        return self._left < 0 or super().is_set()


@pytest.fixture(scope="module")
def runner(tiny_model: Path) -> Iterator[Runner]:
    yield Runner(tiny_model, context_length=512, threads=1, gpu_layers=0)


def _reply(runner: Runner, prompt: str, cancel: threading.Event | None = None) -> tuple[str, Finished]:
    tokens = runner.tokenize(prompt, rendered_chat=False)
    events = list(runner.generate(tokens, Sampling(max_tokens=12, temperature=0.0), cancel or threading.Event()))
    finished = events[-1]
    assert isinstance(finished, Finished)
    return "".join(event.text for event in events if isinstance(event, TextPiece)), finished


def test_stop_during_a_long_prompt_pass_ends_it_at_the_next_chunk(runner: Runner) -> None:
    prompt = "a long document to summarise " * 16  # 464 tokens: two chunks
    assert len(runner.tokenize(prompt, rendered_chat=False)) > PREFILL_CHUNK + 1

    text, finished = _reply(runner, prompt, _StopAfter(1))

    assert (text, finished.finish_reason, finished.completion_tokens) == ("", "cancelled", 0)
    assert runner.llama.n_tokens == PREFILL_CHUNK  # one chunk evaluated, the rest never started


def test_reusing_the_cache_never_changes_a_greedy_reply(runner: Runner) -> None:
    prompt = "shared beginning " * 20 + "then one ending"
    fresh, _ = _reply(runner, prompt)
    _reply(runner, "shared beginning " * 20 + "and a different ending")  # leaves a diverging tail in the cache
    after_divergence, _ = _reply(runner, prompt)
    repeated, finished = _reply(runner, prompt)

    assert fresh == after_divergence == repeated
    assert finished.completion_tokens == 12


def test_a_reply_is_continued_from_inside_it(tiny_chat_model: Path) -> None:
    runner = Runner(tiny_chat_model, context_length=512, threads=1, gpu_layers=0)
    messages = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "It is Par"}]
    prompt = runner.chat_prompt(messages, continue_final=True)
    assert prompt.endswith("<|im_start|>assistant\nIt is Par")  # no end-of-turn marker: the model goes on
    assert runner.chat_prompt(messages[:1]).endswith("<|im_start|>assistant\n")  # a new turn otherwise
    with pytest.raises(RequestError, match="last message from the assistant"):
        runner.chat_prompt(messages[:1], continue_final=True)
