"""The sampler chain worked out for the sampling lab, with tables of small distributions."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from localai_app.core.replies import SamplingOptions, TokenChoice
from localai_app.core.sampling import apply_sampler


def _choices(*probabilities: float) -> list[TokenChoice]:
    """Alternatives with these probabilities over the whole vocabulary, named a, b, c... with ids 0, 1, 2..."""
    return [TokenChoice(chr(ord("a") + index), math.log(p), index) for index, p in enumerate(probabilities)]


OFF = SamplingOptions(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)


def _set(*, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0) -> SamplingOptions:
    """Every sampler off but those named."""
    return replace(OFF, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)


@pytest.mark.parametrize(
    ("probabilities", "settings", "cuts", "after", "open_tail"),
    [
        # Nothing cut, temperature 1: shares as given, renormalised over those shown (the tail stays in play).
        ((0.5, 0.3, 0.2), OFF, [None, None, None], [0.5, 0.3, 0.2], False),
        ((0.4, 0.2, 0.1), OFF, [None, None, None], [4 / 7, 2 / 7, 1 / 7], True),
        # Top-k keeps the k likeliest.
        ((0.5, 0.3, 0.2), _set(top_k=2), [None, None, "top-k"], [0.625, 0.375, 0], False),
        # Top-p keeps tokens until their sum reaches p, the token that crosses it included.
        ((0.5, 0.3, 0.2), _set(top_p=0.6), [None, None, "top-p"], [0.625, 0.375, 0], False),
        ((0.5, 0.3, 0.2), _set(top_p=0.5), [None, "top-p", "top-p"], [1, 0, 0], False),
        # ... over what top-k left, renormalised: 0.5/0.8 = 0.625 already reaches 0.6.
        ((0.5, 0.3, 0.2), _set(top_p=0.6, top_k=2), [None, "top-p", "top-k"], [1, 0, 0], False),
        # Min-p keeps probabilities at least min_p times the top's: 0.25 x 0.5 = 0.125.
        ((0.5, 0.3, 0.1), _set(min_p=0.25), [None, None, "min-p"], [0.625, 0.375, 0], False),
        # Temperature reshapes what is kept: 2 flattens (shares as square roots), 0.5 sharpens (squares).
        ((0.64, 0.36), _set(temperature=2.0), [None, None], [0.8 / 1.4, 0.6 / 1.4], False),
        ((0.6, 0.4), _set(temperature=0.5), [None, None], [0.36 / 0.52, 0.16 / 0.52], False),
        # Temperature 0 is greedy: the likeliest only, whatever else is set.
        ((0.5, 0.3, 0.2), _set(temperature=0.0), [None, "temperature 0", "temperature 0"], [1, 0, 0],
         False),
    ],
)  # fmt: skip
def test_the_chain(
    probabilities: tuple[float, ...],
    settings: SamplingOptions,
    cuts: list[str | None],
    after: list[float],
    open_tail: bool,
) -> None:
    result = apply_sampler(_choices(*probabilities), settings)
    assert [candidate.cut_by for candidate in result.candidates] == cuts
    assert [candidate.after for candidate in result.candidates] == pytest.approx(after)
    assert [candidate.before for candidate in result.candidates] == pytest.approx(probabilities)
    assert result.open_tail is open_tail


def test_top_p_and_min_p_read_the_logits_before_temperature() -> None:
    """As llama.cpp's chain runs: a high temperature flattens the draw but does not bring cut tokens back."""
    cold = apply_sampler(_choices(0.7, 0.2, 0.1), _set(temperature=0.5, top_p=0.8))
    hot = apply_sampler(_choices(0.7, 0.2, 0.1), _set(temperature=3.0, top_p=0.8))
    assert [c.cut_by for c in cold.candidates] == [c.cut_by for c in hot.candidates] == [None, None, "top-p"]
    assert hot.candidates[1].after > cold.candidates[1].after


def test_the_first_cut_is_named_and_order_of_input_does_not_matter() -> None:
    choices = _choices(0.5, 0.3, 0.15, 0.05)
    result = apply_sampler(list(reversed(choices)), _set(top_p=0.7, top_k=3, min_p=0.2))
    assert [c.choice.token for c in result.candidates] == ["a", "b", "c", "d"]
    assert [c.cut_by for c in result.candidates] == [None, None, "top-p", "top-k"]
    assert [c.choice.token for c in result.drawable] == ["a", "b"]


def test_no_alternatives_gives_an_empty_distribution() -> None:
    assert apply_sampler([], OFF).candidates == []
