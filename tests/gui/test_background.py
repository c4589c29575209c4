"""LatestOnly: the answer to a request the user has moved on from never reaches the view."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, QThreadPool
from pytestqt.qtbot import QtBot

from localai_app.core.errors import AppError
from localai_app.ui.background import WAITING_THREADS, LatestOnly, run_in_background


def _finish(release: threading.Event, qtbot: QtBot) -> None:
    """Lets the held requests finish and delivers whatever they send to the GUI thread."""
    release.set()
    assert QThreadPool.globalInstance().waitForDone(10_000)
    qtbot.wait(100)


def test_an_older_requests_late_answer_is_dropped(qtbot: QtBot) -> None:
    parent = QObject()
    requests = LatestOnly(parent)
    answers: list[str] = []
    release = threading.Event()

    def older() -> str:
        release.wait(10)
        return "older"

    requests.run(older, answers.append, answers.append)
    requests.run(lambda: "newest", answers.append, answers.append)
    qtbot.waitUntil(lambda: answers == ["newest"])
    _finish(release, qtbot)  # the older one answers now, after the newest
    assert answers == ["newest"]


def test_an_older_requests_late_failure_is_dropped(qtbot: QtBot) -> None:
    parent = QObject()
    requests = LatestOnly(parent)
    failures: list[str] = []
    release = threading.Event()

    def older() -> str:
        release.wait(10)
        raise AppError("the older request failed")

    def newest() -> str:
        raise AppError("the engine is gone")

    requests.run(older, failures.append, failures.append)
    requests.run(newest, failures.append, failures.append)
    qtbot.waitUntil(lambda: failures == ["the engine is gone"])
    _finish(release, qtbot)
    assert failures == ["the engine is gone"]


def test_drop_silences_the_request_in_flight(qtbot: QtBot) -> None:
    parent = QObject()
    requests = LatestOnly(parent)
    answers: list[str] = []
    release = threading.Event()

    def held() -> str:
        release.wait(10)
        return "stale"

    requests.run(held, answers.append, answers.append)
    requests.drop()  # the view now shows something else
    _finish(release, qtbot)
    assert answers == []


def test_requests_waiting_on_slow_work_leave_threads_for_others(qtbot: QtBot) -> None:
    """Qt sizes its pool by cores (2 here): requests that wait on a slow Hub or a loading model must not hold all."""
    parent = QObject()
    answers: list[str] = []
    release = threading.Event()

    def waiting() -> str:
        release.wait(10)
        return "slow"

    for _ in range(WAITING_THREADS - 1):
        run_in_background(parent, waiting, answers.append, answers.append)
    run_in_background(parent, lambda: "quick", answers.append, answers.append)
    try:
        qtbot.waitUntil(lambda: answers == ["quick"], timeout=3000)
    finally:
        _finish(release, qtbot)
    assert answers == ["quick"] + ["slow"] * (WAITING_THREADS - 1)
