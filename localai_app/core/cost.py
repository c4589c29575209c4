"""What self-hosting costs per million generated tokens, and the monthly volume where it beats a hosted API.

The model, in the words the report shows next to the numbers:

    monthly machine cost   = machine price / (lifetime in years x 12)
    monthly tokens         = throughput x seconds in a month x utilisation
    electricity / M tokens = power (kW) x hours per million tokens x price per kWh
    cost / M tokens        = monthly machine cost / monthly tokens (millions) + electricity / M tokens
    break-even volume      = monthly machine cost / (API price / M tokens - electricity / M tokens)

Electricity is counted for the hours the machine works (its idle draw is left out: the machine is usually on
anyway), and the machine's price is spread evenly over its lifetime whether it works or not. Throughput counts
generated tokens, so the API price to compare is its price per million *output* tokens.

Pure functions: the Evaluate panel, the CLI and the report all call these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from localai_app.core.errors import AppError

HOURS_PER_MONTH = 365.25 * 24 / 12  # 730.5: an average month
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
MILLION = 1_000_000

# Rough power draw under load by device kind, for when the user does not know the machine's. These are
# thermal-design-power classes, not measurements: mainstream desktop CPUs are sold at 65-125 W for 6-16 cores
# (about 10 W a core), discrete GPUs at 150-450 W, and an Apple silicon machine draws 20-60 W at the wall.
SYSTEM_BASE_WATTS = 30.0  # board, memory, disk, fans, power-supply losses
CPU_WATTS_PER_CORE = 10.0
CPU_WATTS_MAX = 250.0
DISCRETE_GPU_WATTS = 250.0
UNIFIED_MEMORY_MACHINE_WATTS = 40.0  # the whole Apple silicon machine, CPU and GPU together


class CostInputError(AppError):
    """A cost input that cannot be used (negative, zero lifetime, ...); `str()` names it."""


@dataclass(frozen=True)
class CostInputs:
    machine_price: float  # in the user's currency
    lifetime_years: float
    power_watts: float  # average draw while generating
    electricity_per_kwh: float
    utilisation: float  # share of the month the machine generates at the measured throughput, 0-1
    api_price_per_million: float  # a hosted API's price per million output tokens
    currency: str = "$"
    power_source: str = "entered by the user"

    def check(self) -> None:
        """Raise CostInputError naming the first input that makes no sense."""
        for label, value in (
            ("The machine's price", self.machine_price),
            ("The power draw", self.power_watts),
            ("The electricity price", self.electricity_per_kwh),
            ("The API's price", self.api_price_per_million),
        ):
            if value < 0:
                raise CostInputError(f"{label} cannot be negative.")
        if self.lifetime_years <= 0:
            raise CostInputError("The machine's lifetime must be more than zero years.")
        if not 0 < self.utilisation <= 1:
            raise CostInputError("The utilisation must be more than 0 % and at most 100 %.")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PowerEstimate:
    watts: float
    source: str  # one sentence: where the figure comes from


@dataclass(frozen=True)
class CostResult:
    throughput_tok_s: float
    monthly_machine_cost: float
    monthly_tokens: float  # at the chosen utilisation
    electricity_per_million: float
    cost_per_million: float | None  # None where it cannot be computed (see `verdict`)
    break_even_tokens_per_month: float | None  # None where self-hosting is never cheaper
    break_even_utilisation: float | None  # the share of the month the machine must work to break even
    verdict: str  # one sentence for the user
    formula: str  # the formula with the numbers put in

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def estimate_power(hardware: dict[str, Any]) -> PowerEstimate:
    """A rough power draw under load from `Hardware.as_json()`, with the sentence that says how it was made."""
    gpus = hardware.get("gpus") or []
    if any(gpu.get("unified_memory") for gpu in gpus):
        watts = UNIFIED_MEMORY_MACHINE_WATTS
        source = f"Rough estimate: an Apple silicon machine draws about {watts:.0f} W under load."
        return PowerEstimate(watts, source)
    cores = max(1, int(hardware.get("physical_cores") or 1))
    cpu = min(CPU_WATTS_MAX, cores * CPU_WATTS_PER_CORE)
    discrete = [gpu for gpu in gpus if not gpu.get("unified_memory")]
    watts = SYSTEM_BASE_WATTS + cpu + DISCRETE_GPU_WATTS * len(discrete)
    parts = [f"{SYSTEM_BASE_WATTS:.0f} W for the system", f"{cpu:.0f} W for {cores} CPU cores"]
    if discrete:
        parts.append(f"{DISCRETE_GPU_WATTS:.0f} W for each of {len(discrete)} GPU(s)")
    source = (
        f"Rough estimate from typical power ratings by device kind, not a measurement: {', '.join(parts)}; "
        "enter the machine's real draw if you know it."
    )
    return PowerEstimate(watts, source)


def throughput_for_cost(model: dict[str, Any]) -> float:
    """Generated tokens per second a server on this machine sustains for one report model: the best measured
    concurrency throughput (a server answers many clients at once), else the median single-stream speed."""
    levels = [level.get("throughput_tok_s") or 0.0 for level in model.get("concurrency") or []]
    if levels and max(levels) > 0:
        return float(max(levels))
    summary = (model.get("summary") or {}).get("gen_tok_s") or {}
    return float(summary.get("median") or 0.0)


def self_hosting_cost(inputs: CostInputs, throughput_tok_s: float) -> CostResult:
    """Cost per million generated tokens at `throughput_tok_s`, and where self-hosting breaks even."""
    inputs.check()
    money = inputs.currency
    monthly_machine = inputs.machine_price / (inputs.lifetime_years * 12)
    if throughput_tok_s <= 0:
        verdict = "No generation speed was measured for this model, so its cost per token cannot be computed."
        return CostResult(0.0, monthly_machine, 0.0, 0.0, None, None, None, verdict, "")
    monthly_tokens = throughput_tok_s * SECONDS_PER_MONTH * inputs.utilisation
    hours_per_million = MILLION / throughput_tok_s / 3600
    kilowatts = inputs.power_watts / 1000
    electricity = kilowatts * hours_per_million * inputs.electricity_per_kwh
    machine_share = monthly_machine / (monthly_tokens / MILLION)
    cost = machine_share + electricity
    formula = (
        f"cost / M tokens = {money}{inputs.machine_price:,.2f} / ({_number(inputs.lifetime_years)} years x 12)"
        f" / {monthly_tokens / MILLION:,.2f} M tokens a month"
        f" + {_number(kilowatts)} kW x {hours_per_million:,.3f} h x {money}{inputs.electricity_per_kwh:,.3f}/kWh"
        f" = {money}{machine_share:,.4f} + {money}{electricity:,.4f} = {money}{cost:,.4f}"
    )
    capacity = throughput_tok_s * SECONDS_PER_MONTH  # the machine working all month
    margin = inputs.api_price_per_million - electricity
    if margin <= 0:
        verdict = (
            f"Self-hosting is never cheaper: electricity alone costs {money}{electricity:,.4f} per million tokens, "
            f"at least the API's {money}{inputs.api_price_per_million:,.4f}."
        )
        return CostResult(
            throughput_tok_s, monthly_machine, monthly_tokens, electricity, cost, None, None, verdict, formula
        )
    break_even = monthly_machine / margin * MILLION
    formula += (
        f"; break-even = {money}{monthly_machine:,.2f} a month / ({money}{inputs.api_price_per_million:,.4f}"
        f" - {money}{electricity:,.4f}) = {break_even / MILLION:,.2f} M tokens a month"
    )
    break_even_share = break_even / capacity
    if break_even_share > 1:
        verdict = (
            f"Self-hosting is never cheaper on this machine: breaking even needs {break_even / MILLION:,.1f} M tokens "
            f"a month, more than the {capacity / MILLION:,.1f} M it can generate working all month."
        )
    else:
        verdict = (
            f"Self-hosting is cheaper above {break_even / MILLION:,.1f} M tokens a month "
            f"({break_even_share:.0%} of the month generating); at {inputs.utilisation:.0%} it costs "
            f"{money}{cost:,.4f} per million against the API's {money}{inputs.api_price_per_million:,.4f}."
        )
    return CostResult(
        throughput_tok_s,
        monthly_machine,
        monthly_tokens,
        electricity,
        cost,
        break_even,
        break_even_share,
        verdict,
        formula,
    )


def cost_section(inputs: CostInputs, models: list[dict[str, Any]]) -> dict[str, Any]:
    """The report document's "cost" member: the inputs, and each model's result by name."""
    return {
        "inputs": inputs.as_json(),
        "models": {model["name"]: self_hosting_cost(inputs, throughput_for_cost(model)).as_json() for model in models},
    }


def _number(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".")
