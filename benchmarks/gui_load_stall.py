"""Does loading a model stall the GUI thread? The longest gap between event-loop turns while the starter model
loads, against the same window sitting idle for as long, alternately (idle, load, idle, load, ...).

The stall is how late a 5 ms timer fired at worst (benchmarks/gui_probe.py): the worst freeze a user could have
seen (a click or a repaint waits at most that long).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_load_stall.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtWidgets import QApplication

from benchmarks.gui_probe import StallMeter, measure_idle, wait
from localai_app.app import build_window
from localai_app.core.paths import AppPaths
from localai_app.core.settings import Settings, save_settings
from localai_app.core.starter import starter_path
from localai_app.ui.main_window import MainWindow


def measure_load(window: MainWindow, meter: StallMeter) -> tuple[float, float]:
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
        meter = StallMeter()
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
        f"longest main-thread stall  idle {statistics.median(idle_gaps):.1f} ms (max {max(idle_gaps):.1f})"
        f"  loading {statistics.median(load_gaps):.1f} ms (max {max(load_gaps):.1f})"
    )


if __name__ == "__main__":
    main()
