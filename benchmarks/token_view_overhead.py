"""What the token view costs through the GUI: the real window (offscreen) on the starter model streams the same
~128-token reply (same prompt, same seed) with the token view on and off, interleaved (on, off, on, off, ...).

Speed is what the user sees: tokens/s of the stream as it reaches the GUI thread (from the first delta to the
end, after the first token), so it counts the engine, the client's parsing on the worker thread and the window's
work on the main thread (the view's repaints, the reply saved with its probabilities). The engine's own figure is
printed beside it. The issue's target: on ÷ off ≥ 0.95, by the ratio of medians and by the median of the
per-round ratios.

    QT_QPA_PLATFORM=offscreen PYTHONPATH=. .venv/bin/python benchmarks/token_view_overhead.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QApplication

from benchmarks.gui_probe import wait
from localai_app.app import build_window
from localai_app.core.paths import AppPaths
from localai_app.core.settings import Settings, save_settings
from localai_app.core.starter import ensure_starter
from localai_app.ui.main_window import MainWindow

PROMPT = "The history of the city begins in the year"
SEED = 42
TOKENS = 128
REPLY_TIMEOUT_MS = 600_000  # generous: on a busy machine a reply can take minutes


class Reply(QObject):
    """One reply as the GUI thread saw it: a QObject of that thread, so the worker's signals reach it queued there."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.first: float | None = None
        self.last = 0.0
        self.stats: dict[str, object] = {}
        window.worker.delta.connect(self._on_delta)
        window.worker.finished.connect(self._on_finished)

    @Slot(str)
    def _on_delta(self, _text: str) -> None:
        self.last = time.perf_counter()
        if self.first is None:
            self.first = self.last

    @Slot(dict)
    def _on_finished(self, stats: dict[str, object]) -> None:
        self.stats = stats


def run(window: MainWindow, token_view: bool) -> tuple[float, float, int, float]:
    """(tokens/s seen by the GUI, tokens/s the engine reports, tokens, CPU ms per token of the GUI process: all its
    threads, the main thread's views and the worker's parsing) for one reply in a new conversation."""
    window.new_conversation()
    window.token_button.setChecked(token_view)
    reply = Reply(window)
    window.prompt_box.setPlainText(PROMPT)
    cpu = time.process_time()
    window.send_button.click()
    wait(REPLY_TIMEOUT_MS, until=lambda: bool(reply.stats) and window.send_button.isEnabled())
    cpu = time.process_time() - cpu
    window.worker.delta.disconnect(reply._on_delta)
    window.worker.finished.disconnect(reply._on_finished)
    tokens = reply.stats.get("completion_tokens")
    engine = reply.stats.get("tokens_per_second")
    if not isinstance(tokens, int) or not isinstance(engine, float) or reply.first is None or tokens < 2:
        raise SystemExit(f"the reply did not finish normally: {reply.stats} {window.error_banner.text()}")
    if token_view and len(window.token_view.tokens) != tokens:
        raise SystemExit(f"the token view showed {len(window.token_view.tokens)} of {tokens} tokens")
    return (tokens - 1) / (reply.last - reply.first), engine, tokens, 1000 * cpu / tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    app = QApplication(sys.argv)
    model = ensure_starter()
    with tempfile.TemporaryDirectory() as basedir:
        paths = AppPaths.under(Path(basedir)).create()
        save_settings(paths.config, Settings(last_model=model.stem))
        window = build_window(paths)
        window.resize(1400, 900)
        window.show()
        wait(60_000, until=lambda: window.engine_manager.loaded_model is not None)  # the preload at start
        window.max_tokens.setValue(TOKENS)
        window.seed.setValue(SEED)
        run(window, True)  # warm-up: caches, the first layout of each view
        on: list[float] = []
        off: list[float] = []
        engine_on: list[float] = []
        engine_off: list[float] = []
        counts: set[int] = set()
        cpu_on: list[float] = []
        cpu_off: list[float] = []
        for round_ in range(args.rounds):
            for view, seen, engine, cpu in ((True, on, engine_on, cpu_on), (False, off, engine_off, cpu_off)):
                speed, engine_speed, tokens, cpu_ms = run(window, view)
                seen.append(speed)
                engine.append(engine_speed)
                cpu.append(cpu_ms)
                counts.add(tokens)
            # As it goes, so that a run cut short still says something.
            print(f"round {round_ + 1}: on {on[-1]:.1f} off {off[-1]:.1f} tok/s (GUI-seen)", flush=True)
        window.close()
    del app
    ratios = [with_view / without for with_view, without in zip(on, off, strict=True)]
    print(f"rounds={args.rounds} model={model.stem} tokens={sorted(counts)} prompt={PROMPT!r} seed={SEED}")
    print(f"GUI-seen tok/s  on  {statistics.median(on):.1f} median  {', '.join(f'{v:.1f}' for v in on)}")
    print(f"GUI-seen tok/s  off {statistics.median(off):.1f} median  {', '.join(f'{v:.1f}' for v in off)}")
    print(f"engine tok/s    on  {statistics.median(engine_on):.1f}  off {statistics.median(engine_off):.1f}")
    print(f"GUI process CPU on  {statistics.median(cpu_on):.2f}  off {statistics.median(cpu_off):.2f} ms/token")
    print(
        f"on/off: ratio of medians {statistics.median(on) / statistics.median(off):.3f}, "
        f"median of ratios {statistics.median(ratios):.3f} (target >= 0.95)"
    )


if __name__ == "__main__":
    main()
