"""Makes the README's screenshots from the real window, offline: real replies of the bundled starter model in the
conversations view, presenter mode at 1920x1080 while a reply streams, side by side (the starter at two
temperatures), the Discover panel against the loopback Hub, the Local API panel serving the starter, and the sampling
lab on the starter's next token.

QT_QPA_PLATFORM=offscreen PYTHONPATH=. .venv/bin/python docs/screenshots.py
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from PySide6.QtWidgets import QApplication

import tests  # noqa: F401  (keeps huggingface_hub away from the user's token and the real Hub)
from localai_app.app import build_window
from localai_app.core.downloads import RUNNING
from localai_app.core.paths import AppPaths
from localai_app.core.serving import DEFAULT_PORT
from localai_app.core.starter import ensure_starter
from tests.fakes.hub_server import FakeHub, FakeRepo

DOCS = Path(__file__).parent


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for line {condition.__code__.co_firstlineno}")
        QApplication.processEvents()
        time.sleep(0.01)


def conversations(basedir: Path) -> None:
    paths = AppPaths.under(basedir).create()
    window = build_window(paths)
    window.resize(1400, 820)
    window.show()
    wait_until(lambda: window.current_model() is not None)
    window.max_tokens.setValue(80)
    window.seed.setValue(7)
    for prompt in ("A recipe for bread starts with", "The three laws of motion are", "The history of Rome"):
        window.sidebar.new_button.click()
        window.prompt_box.setPlainText(prompt)
        window.send_button.click()
        wait_until(lambda: not window.send_button.isEnabled())
        wait_until(window.send_button.isEnabled)
    window.sidebar.toggle_pin(window.session.store.list_conversations()[-1].id)
    QApplication.processEvents()
    window.grab().save(str(DOCS / "screenshot.png"))
    window.close()


def presenter(basedir: Path) -> None:
    """Presenter mode on a 1920x1080 projector, caught while the starter writes, so the big red Stop shows."""
    paths = AppPaths.under(basedir).create()
    window = build_window(paths)
    window.show()
    wait_until(lambda: window.current_model() is not None)
    window.seed.setValue(7)
    window.set_presenting(True)
    QApplication.processEvents()  # full screen first: offscreen, that is a small virtual screen
    window.resize(1920, 1080)
    window.prompt_box.setPlainText("The three laws of motion are")
    window.send_button.click()
    wait_until(lambda: len(window.chat_view.reply_so_far()) > 160 or window.send_button.isEnabled(), timeout=300)
    window.grab().save(str(DOCS / "presenter.png"))
    window.stop_button.click()
    wait_until(window.send_button.isEnabled)
    window.close()


def side_by_side(basedir: Path) -> None:
    """The starter model twice, at temperature 0 and 1.2 with one seed: what randomness does to one prompt."""
    paths = AppPaths.under(basedir).create()
    window = build_window(paths)
    window.show()
    wait_until(lambda: window.current_model() is not None)
    panes = window.open_side_by_side()
    panes.resize(1400, 820)
    model = window.current_model()
    panes.choose(model.name if model else None, model.name if model else None)
    for pane, temperature in zip(panes.panes, (0.0, 1.2), strict=True):
        pane.settings_panel.temperature.setValue(temperature)
        pane.settings_panel.seed.setValue(7)
        pane.settings_panel.max_tokens.setValue(80)
    panes.prompt_box.setPlainText("Once upon a time, in a small village by the sea,")
    panes.send_button.click()
    wait_until(lambda: not panes.busy, timeout=300)
    QApplication.processEvents()
    panes.grab().save(str(DOCS / "side-by-side.png"))
    window.close()


def discover(hub: FakeHub, basedir: Path) -> None:
    paths = AppPaths.under(basedir).create()
    window = build_window(paths)
    window.resize(1400, 900)
    window.show()
    wait_until(lambda: window.current_model() is not None)
    window.discover_button.click()
    panel = window.discover_panel
    assert panel is not None
    panel.query.setText("gemma-3-270m")
    panel.search_button.click()
    wait_until(lambda: "GGUF repositor" in panel.status.text())  # the catalog is listed until the results come
    first = panel.results.topLevelItem(0)
    assert first is not None
    panel.results.setCurrentItem(first)
    wait_until(lambda: panel.files.topLevelItemCount() > 0 and panel.download_button.isEnabled())
    # Forecasts appear once the starter's first load has measured the memory bandwidth.
    wait_until(lambda: "tokens/s" in getattr(panel.files.topLevelItem(0), "text", lambda _: "")(5))
    panel.download_button.click()
    # A download caught at about two thirds, paused there so the picture shows the bar, speed and controls.
    wait_until(lambda: any(job.state == RUNNING and job.done > job.total * 0.6 for job in panel.downloads.jobs()))
    job = panel.downloads.jobs()[0]
    panel.downloads.pause(job.job_id)
    wait_until(lambda: panel.downloads.jobs()[0].state != RUNNING)
    QApplication.processEvents()
    window.grab().save(str(DOCS / "discover.png"))
    window.close()


def local_api(basedir: Path) -> None:
    """The Local API panel serving the starter model, after a few calls from another program (one without the key)."""
    paths = AppPaths.under(basedir).create()
    window = build_window(paths)
    window.resize(1400, 900)
    window.show()
    wait_until(lambda: window.current_model() is not None)
    window.local_api_button.click()
    panel = window.local_api_panel
    assert panel is not None
    panel.generate_key_button.click()
    panel.language.setCurrentText("Python")
    panel.switch.click()
    wait_until(lambda: panel.status.text().startswith("Serving"))
    base = f"http://127.0.0.1:{DEFAULT_PORT}/v1"
    key = {"Authorization": f"Bearer {panel.key.text()}"}
    for prompt in ("The capital of France is", "A haiku about the sea:", "def fibonacci(n):"):
        body = {"model": "gemma", "prompt": prompt, "max_tokens": 24, "seed": 7}
        httpx.post(f"{base}/completions", headers=key, json=body, timeout=60).raise_for_status()
    httpx.get(f"{base}/models", headers=key, timeout=10).raise_for_status()
    httpx.get(f"{base}/models", timeout=10)  # no key: 401, in red
    wait_until(lambda: panel.log.rowCount() == 5)
    QApplication.processEvents()
    window.grab().save(str(DOCS / "local-api.png"))
    window.close()


def evaluate(basedir: Path) -> None:
    """The Evaluate panel after a short real benchmark of the starter model (its results, charts and cost)."""
    paths = AppPaths.under(basedir).create()
    window = build_window(paths)
    window.resize(1400, 900)
    window.show()
    wait_until(lambda: window.current_model() is not None)
    window.evaluate_button.click()
    panel = window.evaluate_panel
    assert panel is not None
    wait_until(lambda: panel.model_list.count() > 0)
    model = window.current_model()
    panel.set_chosen([model.name if model else ""])
    panel.prompt_tokens.setValue(256)
    panel.gen_tokens.setValue(64)
    panel.repeat.setValue(3)
    panel.concurrency.setText("1,4")
    panel.quality.setChecked(True)
    panel.run_button.click()
    wait_until(lambda: panel.document is not None or not panel.is_running(), timeout=600)
    QApplication.processEvents()
    window.grab().save(str(DOCS / "evaluate.png"))
    window.close()


def sampling_lab(basedir: Path) -> None:
    """The sampling lab on the starter's next token after a real prompt, with settings whose cuts show."""
    paths = AppPaths.under(basedir).create()
    window = build_window(paths)
    window.show()
    wait_until(lambda: window.current_model() is not None)
    window.prompt_box.setPlainText("The capital of France is")
    window.lab_button.click()
    lab = window.sampling_lab
    assert lab is not None
    lab.resize(1300, 400)
    wait_until(lambda: not lab.busy, timeout=120)
    for slider, value in ((lab.temperature, 80), (lab.top_k, 40), (lab.top_p, 90), (lab.min_p, 10)):
        slider.setValue(value)
    lab.seed.setValue(7)
    wait_until(lambda: lab.chart.drawn_is_current and not lab.busy, timeout=120)
    QApplication.processEvents()
    lab.grab().save(str(DOCS / "sampling-lab.png"))
    window.close()


def main() -> None:
    QApplication.instance() or QApplication([])
    model = ensure_starter()
    with FakeHub() as hub, tempfile.TemporaryDirectory() as scratch:
        hub.add_repo(
            FakeRepo(
                "unsloth/gemma-3-270m-it-GGUF",
                {
                    model.name: model,
                    "gemma-3-270m-it-Q8_0.gguf": model,
                    "gemma-3-270m-it-F16.gguf": model,
                    "README.md": b"# Gemma 3 270M (GGUF)\n\nA small instruction-tuned model for quick tests.\n",
                },
                licence="gemma",
                downloads=182_000,
                likes=240,
                parameters=268_000_000,
            )
        )
        os.environ["HF_ENDPOINT"] = hub.url
        conversations(Path(scratch) / "conversations")
        presenter(Path(scratch) / "presenter")
        side_by_side(Path(scratch) / "side-by-side")
        discover(hub, Path(scratch) / "discover")
        local_api(Path(scratch) / "local-api")
        evaluate(Path(scratch) / "evaluate")
        sampling_lab(Path(scratch) / "sampling-lab")


if __name__ == "__main__":
    main()
