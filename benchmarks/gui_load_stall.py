"""Does loading a model stall the GUI thread? The longest gap between event-loop turns while the starter model
loads, against the same window sitting idle for as long, alternately (idle, load, idle, load, ...).

A zero-interval QTimer ticks whenever the event loop is free; the longest time between two ticks is the worst
freeze a user could have seen (a click or a repaint waits at most that long).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_load_stall.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from localai_app.app import build_window
from localai_app.core.paths import AppPaths
from localai_app.core.settings import Settings, save_settings
from localai_app.core.starter import starter_path
from localai_app.ui.main_window import MainWindow


class GapMeter:
    """Longest time between two turns of the event loop, in ms, since `reset`."""

    def __init__(self) -> None:
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._tick)
        self.longest = 0.0

    def reset(self) -> None:
        self.longest = 0.0
        self._clock.start()
        self._timer.start()

    def _tick(self) -> None:
        self.longest = max(self.longest, self._clock.nsecsElapsed() / 1e6)
        self._clock.restart()


def wait(milliseconds: float, until: Callable[[], bool] = lambda: False) -> None:
    loop = QEventLoop()
    deadline = time.perf_counter() + milliseconds / 1000
    while time.perf_counter() < deadline and not until():
        loop.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)


def measure_load(window: MainWindow, meter: GapMeter) -> tuple[float, float]:
    """(longest gap ms, load seconds) for one load of the current model from a stopped engine."""
    window.engine_manager.shutdown()
    model = window.current_model()
    loaded: list[str] = []
    window.worker.loaded.connect(loaded.append)
    started = time.perf_counter()
    meter.reset()
    window.load_requested.emit(model, False)
    wait(60_000, until=lambda: bool(loaded))
    seconds = time.perf_counter() - started
    window.worker.loaded.disconnect(loaded.append)
    if not loaded:
        raise SystemExit("the model did not load within a minute")
    return meter.longest, seconds


def measure_idle(meter: GapMeter, milliseconds: float) -> float:
    meter.reset()
    wait(milliseconds)
    return meter.longest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    app = QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as basedir:
        paths = AppPaths.under(Path(basedir)).create()
        save_settings(paths.config, Settings(last_model=starter_path().name))
        window = build_window(paths)
        window.show()
        meter = GapMeter()
        wait(60_000, until=lambda: window.engine_manager.loaded_model is not None)  # the preload at start
        idle_gaps, load_gaps, load_seconds = [], [], []
        for _ in range(args.rounds):
            idle_gaps.append(measure_idle(meter, 1000))
            gap, seconds = measure_load(window, meter)
            load_gaps.append(gap)
            load_seconds.append(seconds)
        window.close()
    del app
    print(f"rounds={args.rounds} model={starter_path().name} load {statistics.median(load_seconds):.2f} s (median)")
    print(
        f"longest event-loop gap  idle {statistics.median(idle_gaps):.1f} ms (max {max(idle_gaps):.1f})"
        f"  loading {statistics.median(load_gaps):.1f} ms (max {max(load_gaps):.1f})"
    )


if __name__ == "__main__":
    main()
