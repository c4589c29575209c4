"""Before a download: each file of a Hub repository with its fit verdict and speed forecast on this machine, and
the one to recommend. Shared by `localai-app files`/`pull` and the GUI's repository view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from localai_app.core.advice import Advice, advise_here
from localai_app.core.errors import ModelFileError
from localai_app.core.estimate import AUTOMATIC, Overrides
from localai_app.core.hardware import Hardware
from localai_app.core.hub_files import QuantChoice, group_files, recommend
from localai_app.core.model_shape import ModelShape
from localai_app.core.paths import AppPaths

if TYPE_CHECKING:  # the gateway imports huggingface_hub (~0.4 s); callers pass it in
    from localai_app.core.hub import Hub, RepoDetails


@dataclass(frozen=True)
class Assessment:
    choices: list[QuantChoice]
    advice: dict[str, Advice]  # by choice name; empty when the header could not describe the model
    recommended: QuantChoice | None
    reason: str
    problems: list[str]  # files left out, in words
    shape: ModelShape | None = None  # from the header read, kept so the advice can be redone without the network

    @property
    def lacks_forecasts(self) -> bool:
        return any(item.tokens_per_second is None for item in self.advice.values())

    def redone(self, machine: Hardware, paths: AppPaths, overrides: Overrides, *, measure: bool) -> Assessment:
        """Verdicts, forecasts and the recommendation for every choice, from the shape already read: after a
        model load has measured the bandwidth, or when the free memory has changed."""
        if self.shape is None:
            return self
        models = [choice for choice in self.choices if not choice.projector]
        shapes = {choice.name: self.shape.with_weight_bytes(choice.size) for choice in models}
        advice = advise_here(shapes, machine, paths, overrides, measure=measure)
        levels = {name: item.plan.verdict.level for name, item in advice.items()}
        recommended, reason = recommend(self.choices, levels)
        return Assessment(self.choices, advice, recommended, reason, self.problems, self.shape)


def assess(
    hub: Hub,
    details: RepoDetails,
    machine: Hardware,
    paths: AppPaths,
    overrides: Overrides = AUTOMATIC,
    *,
    measure: bool = True,
) -> Assessment:
    """Reads one GGUF header (the smallest model file's, with ranged requests) and scales it to every choice."""
    choices, problems = group_files(details.files)
    models = [choice for choice in choices if not choice.projector]
    if not models:
        return Assessment(choices, {}, None, "This repository has no GGUF model file.", problems)
    smallest = min(models, key=lambda choice: (len(choice.files), choice.size))
    try:
        shape = hub.shape(details.summary.repo_id, details.commit, smallest.files[0])
    except ModelFileError as error:
        return Assessment(choices, {}, None, f"No estimate: {error}", problems)
    if shape is None:
        reason = "Its GGUF header does not describe the model's layers, so no memory estimate is possible."
        return Assessment(choices, {}, None, reason, problems)
    return Assessment(choices, {}, None, "", problems, shape).redone(machine, paths, overrides, measure=measure)
