"""The engine's search for the likeliest tokens agrees with a full sort, whichever margin the answer lies within."""

from __future__ import annotations

import numpy as np
import pytest

from localai_app.engine.runner import LIKELY_MARGINS, _likeliest

VOCABULARY = 262_144  # the starter model's


@pytest.mark.parametrize(
    "spread",
    [
        pytest.param(LIKELY_MARGINS[0] / 4, id="found-within-the-narrowest-margin"),
        pytest.param(LIKELY_MARGINS[0] * 1.2, id="found-after-widening"),
        pytest.param(LIKELY_MARGINS[-1] * 40, id="found-only-in-the-whole-vocabulary"),
    ],
)
@pytest.mark.parametrize("top", [1, 10, 100])
def test_the_likeliest_tokens_are_those_a_full_sort_gives(spread: float, top: int) -> None:
    rng = np.random.default_rng(7)
    peak = 100.0
    # `top` leaders spaced evenly from the peak down to `spread` below it; the rest of the vocabulary lies lower.
    logits = rng.normal(0.0, 1.0, VOCABULARY).astype(np.float32)
    logits += np.float32(peak - spread - 1.0 - float(logits.max()))
    leaders = rng.choice(VOCABULARY, size=top, replace=False)
    logits[leaders] = np.linspace(peak, peak - spread, top, dtype=np.float32)
    expected = np.argsort(-logits, kind="stable")[:top]
    assert list(_likeliest(logits, peak, top)) == list(expected)
