"""A repository's files judged for this machine before any download: the header is read once, and the speed
forecasts that need the first load's bandwidth probe are redone from it without the network."""

from __future__ import annotations

import json
from pathlib import Path

from localai_app.core import hardware
from localai_app.core.choices import assess
from localai_app.core.estimate import AUTOMATIC
from localai_app.core.hub import Hub
from localai_app.core.paths import AppPaths
from localai_app.core.speed import BANDWIDTH_FILE
from tests.fakes.hub_server import FakeHub, FakeRepo

REPO = "tester/Tiny-GGUF"


def test_forecasts_come_once_the_bandwidth_is_known_without_reading_the_header_again(
    fake_hub: FakeHub, tiny_model: Path, app_paths: AppPaths
) -> None:
    fake_hub.add_repo(FakeRepo(REPO, {"Tiny-Q8_0.gguf": tiny_model, "Tiny-F16.gguf": tiny_model}))
    machine = hardware.detect(cache_dir=app_paths.cache)
    with Hub(fake_hub.url) as hub:
        before_load = assess(hub, hub.repository(REPO), machine, app_paths, measure=False)
    assert before_load.shape is not None
    assert before_load.lacks_forecasts
    assert {item.speed_text for item in before_load.advice.values()} == {"speed forecast after the first load"}
    assert before_load.recommended is not None

    # What the first model load leaves behind: the bandwidth probe's result for this CPU.
    probe = {"bytes_per_second": 10e9, "threads": machine.physical_cores, "cpu_model": machine.cpu_model}
    (app_paths.cache / BANDWIDTH_FILE).write_text(json.dumps(probe))
    requests_so_far = len(fake_hub.requests)
    after_load = before_load.redone(machine, app_paths, AUTOMATIC, measure=False)
    assert len(fake_hub.requests) == requests_so_far
    assert not after_load.lacks_forecasts
    assert all("tokens/s" in item.speed_text for item in after_load.advice.values())
    assert after_load.recommended == before_load.recommended
    assert after_load.shape is before_load.shape
