"""Side by side on a shared CPU: each pane's tokens/s divided by the same model's alone (the main window's chat, all
threads), and the longest main-thread stall while both panes stream.

Interleaved rounds (alone A, side by side, alone B, ...), medians. Everything goes through the real GUI code path:
an offscreen window's Send, its engine workers and their signals, the panes' chat views. Both sides run the starter
model, with two settings (temperature 0 and 1, the same seed): the "one model, two settings" case, which is also
the heaviest (two engines of the same file). The stall is how late a 5 ms timer fired at worst
(benchmarks/gui_probe.py) while both panes stream.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/side_by_side.py [--rounds 5] [--tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from PySide6.QtWidgets import QApplication

from benchmarks.gui_probe import StallMeter, measure_idle, wait
from localai_app.app import build_window
from localai_app.core.paths import AppPaths
from localai_app.core.settings import Settings, save_settings
from localai_app.core.starter import starter_path
from localai_app.ui.main_window import MainWindow
from localai_app.ui.side_by_side import SideBySideWindow

PROMPT = "The history of the Roman Empire begins with"
TEMPERATURES = (0.0, 1.0)
REPLY_MS = 600_000  # a loaded 2-core machine can fall below 1 token/s


def alone(window: MainWindow, temperature: float, tokens: int) -> float:
    """tokens/s of one reply in the main window's chat, with the given temperature."""
    stats: list[dict[str, object]] = []
    window.temperature.setValue(temperature)
    window.max_tokens.setValue(tokens)
    window.seed.setValue(1)
    window.worker.finished.connect(stats.append)
    window.prompt_box.setPlainText(PROMPT)
    window.send()
    wait(REPLY_MS, until=window.send_button.isEnabled)
    window.worker.finished.disconnect(stats.append)
    return _speed(stats, window.error_banner.text())


def side_by_side(window: SideBySideWindow, meter: StallMeter) -> tuple[float, float, float]:
    """(left tokens/s, right tokens/s, longest main-thread stall in ms) of one side-by-side round."""
    stats: list[list[dict[str, object]]] = [[], []]
    for pane, kept in zip(window.panes, stats, strict=True):
        pane.worker.finished.connect(kept.append)
    window.prompt_box.setPlainText(PROMPT)
    meter.reset()
    window.send()
    wait(REPLY_MS, until=lambda: not window.busy)
    gap = meter.longest
    for pane, kept in zip(window.panes, stats, strict=True):
        pane.worker.finished.disconnect(kept.append)
    left, right = (_speed(kept, pane.stats_label.text()) for pane, kept in zip(window.panes, stats, strict=True))
    return left, right, gap


def _speed(stats: list[dict[str, object]], shown: str) -> float:
    """The reply's tokens/s; `shown` is what the window said, for a reply that did not finish normally."""
    if not stats or not isinstance(stats[0].get("tokens_per_second"), float):
        raise SystemExit(f"a reply did not finish normally: {stats} {shown}")
    speed = stats[0]["tokens_per_second"]
    assert isinstance(speed, float)
    return speed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: the rounds alternate between alone A and alone B")
    app = QApplication(sys.argv)
    model = starter_path().name
    with tempfile.TemporaryDirectory() as basedir:
        paths = AppPaths.under(Path(basedir)).create()
        save_settings(paths.config, Settings(last_model=model))
        window = build_window(paths)
        window.show()
        wait(60_000, until=lambda: window.engine_manager.loaded_model is not None)  # the preload at start
        panes = window.open_side_by_side()
        panes.choose(model, model)
        for pane, temperature in zip(panes.panes, TEMPERATURES, strict=True):
            pane.settings_panel.temperature.setValue(temperature)
            pane.settings_panel.seed.setValue(1)
            pane.settings_panel.max_tokens.setValue(args.tokens)
        meter = StallMeter()
        side_by_side(panes, meter)  # warm-up: both side engines load
        alone_speeds: list[list[float]] = [[], []]
        paired: list[list[float]] = [[], []]
        gaps: list[float] = []
        idle_gaps: list[float] = []  # the same window doing nothing: what the machine's load alone causes
        for round_number in range(args.rounds):
            side = round_number % 2  # alone A, side by side, alone B, side by side, ...
            alone_speeds[side].append(alone(window, TEMPERATURES[side], args.tokens))
            left, right, gap = side_by_side(panes, meter)
            paired[0].append(left)
            paired[1].append(right)
            gaps.append(gap)
            idle_gaps.append(measure_idle(meter, 2000))
        threads = panes.threads
        window.close()
    del app
    print(f"rounds={args.rounds} tokens={args.tokens} model={model} threads per side={threads}")
    for name, alone_side, paired_side in zip(("left (t=0)", "right (t=1)"), alone_speeds, paired, strict=True):
        ratio = statistics.median(paired_side) / statistics.median(alone_side)
        print(
            f"{name}: alone {statistics.median(alone_side):.1f} tok/s, side by side "
            f"{statistics.median(paired_side):.1f} tok/s, ratio {ratio:.2f}"
        )
    print(
        f"longest main-thread stall  idle {statistics.median(idle_gaps):.1f} ms (max {max(idle_gaps):.1f})"
        f"  both streaming {statistics.median(gaps):.1f} ms (max {max(gaps):.1f})"
    )


if __name__ == "__main__":
    main()
