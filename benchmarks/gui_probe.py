"""What the GUI benchmarks share: waiting on the event loop without spinning, and measuring main-thread stalls.

Neither may keep a core busy: on a 2-core machine that core is taken from the engine, which would be measured as
the engine's slowness (and a busy loop also stretches every gap it is meant to measure).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer

CHECK_MS = 10  # how often `wait` looks at its condition
TICK_MS = 5  # the stall meter's timer: a tick later than this is time the event loop was not free


def wait(milliseconds: float, until: Callable[[], bool] = lambda: False) -> None:
    """Runs the event loop (sleeping while idle) until `until()` or the time is up."""
    deadline = time.perf_counter() + milliseconds / 1000
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(CHECK_MS)

    def check() -> None:
        if until() or time.perf_counter() > deadline:
            loop.quit()

    timer.timeout.connect(check)
    timer.start()
    loop.exec()
    timer.stop()


class StallMeter:
    """The longest main-thread stall since `reset`, in ms: the most a TICK_MS precise timer was late. A click or a
    repaint waits at most about that long."""

    def __init__(self) -> None:
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self.longest = 0.0

    def reset(self) -> None:
        self.longest = 0.0
        self._clock.start()
        self._timer.start()

    def _tick(self) -> None:
        self.longest = max(self.longest, self._clock.nsecsElapsed() / 1e6 - TICK_MS)
        self._clock.restart()


def measure_idle(meter: StallMeter, milliseconds: float) -> float:
    """The longest stall of a window doing nothing for `milliseconds`: what the machine's load alone causes."""
    meter.reset()
    wait(milliseconds)
    return meter.longest
