"""The engine's per-token probability arithmetic, which takes shortcuts for speed, against the plain computation."""

from __future__ import annotations

import numpy as np
import pytest

from localai_app.engine.runner import LIKELY_MARGINS, UNSHIFTED_EXP_LIMIT, _likeliest, _log_total

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


@pytest.mark.parametrize(
    "peak",
    [
        pytest.param(0.0, id="unshifted"),
        pytest.param(UNSHIFTED_EXP_LIMIT - 1, id="unshifted-near-the-limit-above"),
        pytest.param(1 - UNSHIFTED_EXP_LIMIT, id="unshifted-near-the-limit-below"),
        pytest.param(UNSHIFTED_EXP_LIMIT + 400, id="shifted-above"),
        pytest.param(-UNSHIFTED_EXP_LIMIT - 400, id="shifted-below"),
    ],
)
def test_log_sum_exp_matches_a_float64_computation_on_either_path(peak: float) -> None:
    rng = np.random.default_rng(11)
    logits = rng.normal(0.0, 3.0, VOCABULARY).astype(np.float32)
    logits += np.float32(peak - float(logits.max()))
    wide = logits.astype(np.float64)
    expected = float(wide.max() + np.log(np.exp(wide - wide.max()).sum()))
    found = _log_total(logits, float(logits.max()), np.empty_like(logits))
    assert found == pytest.approx(expected, abs=1e-4)
