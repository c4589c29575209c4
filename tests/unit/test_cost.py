"""Cost arithmetic, checked against worked examples computed by hand in the comments."""

from __future__ import annotations

from typing import Any

import pytest

from localai_app.core.cost import (
    CostInputError,
    CostInputs,
    cost_section,
    estimate_power,
    self_hosting_cost,
    throughput_for_cost,
)

# A $2,000 machine kept 3 years, drawing 100 W at $0.30/kWh, generating half the month, against an API that
# charges $0.60 per million output tokens.
WORKSTATION = CostInputs(
    machine_price=2000.0,
    lifetime_years=3.0,
    power_watts=100.0,
    electricity_per_kwh=0.30,
    utilisation=0.5,
    api_price_per_million=0.60,
)


def test_worked_example_at_100_tokens_a_second() -> None:
    result = self_hosting_cost(WORKSTATION, 100.0)
    # machine a month:       2000 / (3 x 12)                       = 55.5556
    assert result.monthly_machine_cost == pytest.approx(55.5556, abs=1e-4)
    # tokens a month:        100 tok/s x 730.5 h x 3600 s x 0.5    = 131,490,000
    assert result.monthly_tokens == pytest.approx(131_490_000)
    # electricity per M:     0.1 kW x (1e6 / 100 / 3600 = 2.7778 h) x 0.30 = 0.083333
    assert result.electricity_per_million == pytest.approx(0.083333, abs=1e-6)
    # cost per M:            55.5556 / 131.49 + 0.083333 = 0.422508 + 0.083333 = 0.505841
    assert result.cost_per_million == pytest.approx(0.505841, abs=1e-6)
    # break-even:            55.5556 / (0.60 - 0.083333) = 107.527 M tokens a month
    assert result.break_even_tokens_per_month == pytest.approx(107_526_882, rel=1e-6)
    # share of the month:    107.527 M / (100 x 2,629,800 = 262.98 M) = 0.40888
    assert result.break_even_utilisation == pytest.approx(0.40888, abs=1e-5)
    assert result.verdict == (
        "Self-hosting is cheaper above 107.5 M tokens a month (41% of the month generating); "
        "at 50% it costs $0.5058 per million against the API's $0.6000."
    )
    assert result.formula == (
        "cost / M tokens = $2,000.00 / (3 years x 12) / 131.49 M tokens a month"
        " + 0.1 kW x 2.778 h x $0.300/kWh = $0.4225 + $0.0833 = $0.5058"
        "; break-even = $55.56 a month / ($0.6000 - $0.0833) = 107.53 M tokens a month"
    )


def test_electricity_dearer_than_the_api_means_never_cheaper() -> None:
    # At 100 tok/s electricity is 0.0833 a million (above); an API at 0.05 undercuts electricity alone.
    inputs = CostInputs(2000.0, 3.0, 100.0, 0.30, 0.5, api_price_per_million=0.05)
    result = self_hosting_cost(inputs, 100.0)
    assert result.break_even_tokens_per_month is None
    assert result.cost_per_million == pytest.approx(0.505841, abs=1e-6)  # the cost itself is still shown
    assert result.verdict == (
        "Self-hosting is never cheaper: electricity alone costs $0.0833 per million tokens, at least the API's $0.0500."
    )


def test_break_even_beyond_the_machine_capacity_means_never_cheaper_here() -> None:
    # 1 tok/s: capacity 1 x 2,629,800 = 2.63 M a month; electricity 0.1 kW x 277.78 h x 0.30 = 8.3333 a million;
    # break-even 55.5556 / (20 - 8.3333) = 4.76 M a month: more than the machine can make.
    inputs = CostInputs(2000.0, 3.0, 100.0, 0.30, 1.0, api_price_per_million=20.0)
    result = self_hosting_cost(inputs, 1.0)
    assert result.break_even_tokens_per_month == pytest.approx(4_761_905, rel=1e-6)
    assert result.break_even_utilisation == pytest.approx(1.8107, abs=1e-4)
    assert result.verdict.startswith("Self-hosting is never cheaper on this machine: breaking even needs 4.8 M")
    assert "more than the 2.6 M it can generate working all month" in result.verdict


def test_a_free_machine_breaks_even_at_once() -> None:
    # Already owned (price 0): only electricity counts, 0.0833 < 0.60, so any volume is cheaper.
    inputs = CostInputs(0.0, 3.0, 100.0, 0.30, 0.5, 0.60)
    result = self_hosting_cost(inputs, 100.0)
    assert result.break_even_tokens_per_month == 0
    assert result.cost_per_million == pytest.approx(0.083333, abs=1e-6)


def test_zero_throughput_is_one_sentence_not_a_division_by_zero() -> None:
    result = self_hosting_cost(WORKSTATION, 0.0)
    assert result.cost_per_million is None
    assert result.break_even_tokens_per_month is None
    assert result.verdict == (
        "No generation speed was measured for this model, so its cost per token cannot be computed."
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"machine_price": -1.0}, "The machine's price cannot be negative."),
        ({"power_watts": -5.0}, "The power draw cannot be negative."),
        ({"electricity_per_kwh": -0.1}, "The electricity price cannot be negative."),
        ({"api_price_per_million": -1.0}, "The API's price cannot be negative."),
        ({"lifetime_years": 0.0}, "The machine's lifetime must be more than zero years."),
        ({"utilisation": 0.0}, "The utilisation must be more than 0 % and at most 100 %."),
        ({"utilisation": 1.5}, "The utilisation must be more than 0 % and at most 100 %."),
    ],
)
def test_inputs_that_make_no_sense_are_refused(change: dict[str, float], message: str) -> None:
    inputs = CostInputs(**{**WORKSTATION.as_json(), **change})
    with pytest.raises(CostInputError) as caught:
        self_hosting_cost(inputs, 100.0)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("hardware", "watts", "says"),
    [
        # 30 W system + 2 cores x 10 W
        ({"physical_cores": 2, "gpus": []}, 50.0, "20 W for 2 CPU cores"),
        # 30 + 8 x 10 + 1 x 250
        (
            {"physical_cores": 8, "gpus": [{"name": "RTX 4090", "vendor": "NVIDIA", "unified_memory": False}]},
            360.0,
            "250 W for each of 1 GPU(s)",
        ),
        # 30 + min(250, 64 x 10)
        ({"physical_cores": 64, "gpus": []}, 280.0, "250 W for 64 CPU cores"),
        ({"physical_cores": 10, "gpus": [{"name": "Apple silicon GPU", "unified_memory": True}]}, 40.0, "Apple"),
    ],
)
def test_power_estimate_by_device_kind(hardware: dict[str, Any], watts: float, says: str) -> None:
    estimate = estimate_power(hardware)
    assert estimate.watts == watts
    assert says in estimate.source
    assert estimate.source.startswith("Rough estimate")


def _model(name: str, gen_median: float | None, throughputs: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "summary": {"gen_tok_s": None if gen_median is None else {"median": gen_median, "min": 0, "max": 0}},
        "concurrency": [{"clients": 4 * (i + 1), "throughput_tok_s": value} for i, value in enumerate(throughputs)],
    }


def test_throughput_prefers_the_best_concurrency_level() -> None:
    assert throughput_for_cost(_model("a", 85.0, [150.0, 210.0])) == 210.0
    assert throughput_for_cost(_model("b", 85.0, [])) == 85.0
    assert throughput_for_cost(_model("c", None, [])) == 0.0


def test_cost_section_has_one_result_per_model() -> None:
    section = cost_section(WORKSTATION, [_model("fast", 100.0, []), _model("unmeasured", None, [])])
    assert section["inputs"]["machine_price"] == 2000.0
    assert section["models"]["fast"]["cost_per_million"] == pytest.approx(0.505841, abs=1e-6)
    assert section["models"]["unmeasured"]["cost_per_million"] is None
