"""One answer to "will this model run here, with what settings, and how fast?", for the CLI, the GUI and the Hub.

It joins the load plan (core/estimate.py) with the speed forecast (core/speed.py). Needs the hardware as read now
and the machine's bandwidth (a cached probe), so it is computed off the GUI thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from localai_app.core.estimate import AUTOMATIC, LoadPlan, Overrides, plan_load, unified_memory
from localai_app.core.hardware import Hardware
from localai_app.core.library import ModelInfo, format_bytes
from localai_app.core.model_shape import ModelShape
from localai_app.core.paths import AppPaths
from localai_app.core.replies import ReplyStats
from localai_app.core.speed import (
    MIN_TOKENS_TO_LEARN,
    Run,
    SpeedHistory,
    cached_bandwidth,
    diagnose_slow_run,
    efficiency_of,
    gpu_bandwidth,
    machine_bandwidth,
    speed_bound,
)


@dataclass(frozen=True)
class Advice:
    plan: LoadPlan
    tokens_per_second: float | None  # the forecast; None when the GPU's speed is unknown
    speed_bound: float | None
    efficiency: float
    learned_from_runs: int  # 0: the typical efficiency, not yet this machine's own

    @property
    def speed_text(self) -> str:
        if self.tokens_per_second is None:
            return "speed forecast after the first load"
        digits = 0 if self.tokens_per_second >= 10 else 1  # "about 38", but "about 2.5"
        return f"about {self.tokens_per_second:.{digits}f} tokens/s"

    def lines(self) -> list[str]:
        plan = self.plan
        parts = ", ".join(
            f"{name.replace('_', ' ')} {format_bytes(size)}" for name, size in plan.estimate.breakdown().items()
        )
        basis = f"efficiency {self.efficiency:.2f}, " + (
            f"learned from {self.learned_from_runs} of your replies" if self.learned_from_runs else "a typical value"
        )
        return [
            f"Verdict: {plan.verdict.level}: {plan.verdict.sentence}.",
            f"Memory: {parts}.",
            f"Speed: {self.speed_text} ({basis}).",
            *plan.reasons,
            *(f"Warning: {warning}" for warning in plan.warnings),
        ]

    def as_json(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "verdict": plan.verdict.level,
            "reason": plan.verdict.sentence,
            "context": plan.context,
            "threads": plan.threads,
            "gpu_layers": plan.gpu_layers,
            "ram_bytes": plan.estimate.ram_bytes,
            "vram_bytes": plan.estimate.vram_bytes,
            "breakdown": plan.estimate.breakdown(),
            "estimate": asdict(plan.estimate),
            "tokens_per_second": self.tokens_per_second,
            "speed_bound": self.speed_bound,
            "efficiency": self.efficiency,
            "learned_from_runs": self.learned_from_runs,
            "choices": list(plan.reasons),
            "warnings": list(plan.warnings),
        }


def advise(
    shape: ModelShape,
    machine: Hardware,
    *,
    bandwidth: float | None,
    efficiency: float,
    learned_from_runs: int,
    overrides: Overrides = AUTOMATIC,
    reclaimable_ram: int = 0,
) -> Advice:
    plan = plan_load(shape, machine, overrides, reclaimable_ram=reclaimable_ram)
    discrete = [gpu for gpu in machine.gpus if not gpu.unified_memory]
    gpu_speed = gpu_bandwidth(discrete[0].name) if discrete else None
    # With unified memory the GPU reads the same RAM the probe measured.
    gpu_layers = 0 if unified_memory(machine) else plan.gpu_layers
    bound = speed_bound(shape, bandwidth, gpu_layers, gpu_speed) if bandwidth else None
    return Advice(plan, efficiency * bound if bound else None, bound, efficiency, learned_from_runs)


def advise_here(
    shapes: Mapping[str, ModelShape],
    machine: Hardware,
    paths: AppPaths,
    overrides: Overrides = AUTOMATIC,
    *,
    measure: bool = True,
    reclaimable_ram: int = 0,
) -> dict[str, Advice]:
    """advise() for each named model, with this machine's bandwidth and the efficiency its own recorded replies
    show (both read once). `measure`: run the bandwidth probe if it never ran (not while an engine generates);
    otherwise no forecast until it has."""
    runs = SpeedHistory(paths.data).runs()
    bandwidth = machine_bandwidth(paths.cache, machine) if measure else cached_bandwidth(paths.cache, machine)
    return {
        name: advise(
            shape,
            machine,
            bandwidth=bandwidth.bytes_per_second if bandwidth else None,
            efficiency=efficiency_of(runs),
            learned_from_runs=len(runs),
            overrides=overrides,
            reclaimable_ram=reclaimable_ram,
        )
        for name, shape in shapes.items()
    }


def learn_from_reply(
    paths: AppPaths, *, machine: Hardware, model: ModelInfo, plan: LoadPlan, stats: ReplyStats
) -> list[str]:
    """Record a CPU-only reply's speed (refining later forecasts); return likely causes if it was far too slow."""
    shape = model.shape
    if shape is None or plan.gpu_layers > 0 or stats.tokens_per_second <= 0:
        return []  # the history describes CPU runs; a GPU run's bound depends on the GPU's own bandwidth
    bandwidth = machine_bandwidth(paths.cache, machine).bytes_per_second
    run = Run(shape.bytes_read_per_token, stats.tokens_per_second, bandwidth, plan.threads)
    SpeedHistory(paths.data).record(run, stats.completion_tokens)
    if stats.completion_tokens < MIN_TOKENS_TO_LEARN:
        return []
    causes = diagnose_slow_run(run, machine, model.path)
    if not causes:
        return []
    share = f"{run.efficiency:.0%} of what this machine's memory bandwidth allows"
    return [f"This reply ran at {stats.tokens_per_second:.1f} tokens/s, {share}. Likely: " + "; ".join(causes) + "."]
