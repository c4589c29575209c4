"""What the chat view costs the GUI thread: while a long Markdown reply streams at a fast engine's pace, per update
as the reply and the conversation grow, and when a 1,000-message conversation opens.

(a) A 32,000-character reply (paragraphs, lists, a table, code blocks) arrives in ~4-character deltas at 200
    tokens/s through append_reply and the view's own frame timer, as from the window; the time spent in the view
    (append_reply, flush and painting) over the reply's duration. Target <= 0.10.
(b) Every update of a reply done by hand, one frame's worth of text each (flush and a synchronous repaint): the cost
    of the last 50 updates of a 32,000-character reply / of an 8,000-character one (target <= 1.5), and with 20
    earlier messages above it / with none (target <= 1.2). Scenarios run interleaved, round after round.
(c) show_thread of 1,000 messages (a third of the replies with code, some with reasoning) up to the first paint
    (target <= 300 ms), and until the last of the older messages is rendered, with the longest event-loop gap meanwhile.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/chat_render.py [--rounds 5] [--skip-stream]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtGui import QPaintEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from localai_app.core.conversations import Message
from localai_app.ui.chat_view import FRAME_MS, ChatView

TOKENS_PER_SECOND = 200
CHARS_PER_TOKEN = 4
LAST_UPDATES = 50


class TimedView(ChatView):
    """A chat view that adds up the time spent in it: appending, flushing (rendering and layout) and painting."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = 0.0
        self.resize(900, 700)
        self.show()
        QTest.qWaitForWindowExposed(self)  # before that, painting does nothing

    def append_reply(self, text: str) -> None:
        started = time.perf_counter()
        super().append_reply(text)
        self.busy += time.perf_counter() - started

    def flush(self) -> None:
        started = time.perf_counter()
        super().flush()
        self.busy += time.perf_counter() - started

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802  # Qt's name
        started = time.perf_counter()
        super().paintEvent(event)
        self.busy += time.perf_counter() - started


def section(number: int) -> str:
    """About 2,000 characters of the Markdown a model writes: heading, paragraphs, list, table or code."""
    words = " ".join(f"word{(number * 7 + index) % 97}" for index in range(40))
    parts = [
        f"## Part {number}\n\n",
        f"The **{number}th** part explains {words} with `inline code` and a [link](https://example.com/{number}).\n\n",
        "".join(f"- point {index} of part {number}: {words[: 40 + index * 7]}\n" for index in range(4)),
        "\n",
    ]
    if number % 2:
        parts.append("| name | value | note |\n|---|---|---|\n")
        parts += [f"| row {index} | {index * number} | {words[:30]} |\n" for index in range(6)]
    else:
        parts.append("```python\n")
        parts += [f"def step_{number}_{index}(value: int) -> int:\n    return value * {index}\n" for index in range(8)]
        parts.append("```\n")
    parts.append(f"\nSo part {number} ends with a paragraph of {words}.\n\n")
    return "".join(parts)


def reply_text(length: int) -> str:
    """Sections, then the same closing paragraph whatever the length, so that the last updates compare alike."""
    ending = "In short: " + " ".join(f"point{index}" for index in range(150)) + ".\n"
    text, number = "", 0
    while len(text) + len(section(number)) < length - len(ending):
        text += section(number)
        number += 1
    filler = length - len(ending) - len(text) - 2
    return text + (" ".join(["more"] * length))[:filler] + "\n\n" + ending


def deltas(text: str) -> list[str]:
    return [text[index : index + CHARS_PER_TOKEN] for index in range(0, len(text), CHARS_PER_TOKEN)]


def message(number: int, role: str, content: str, reasoning: str | None = None) -> Message:
    stats = {"completion_tokens": 300, "tokens_per_second": 20.0, "ttft_ms": 150.0} if role == "assistant" else None
    return Message(number, 1, number - 1 or None, role, content, reasoning, "complete", 0.0, "model", None, None, stats)  # type: ignore[arg-type]


def conversation(count: int) -> list[Message]:
    messages = []
    for number in range(1, count + 1):
        if number % 2:
            messages.append(message(number, "user", f"Question {number}: how does part {number} work?\nExplain."))
        else:
            reasoning = f"The user asks about part {number}. " * 20 if number % 10 == 0 else None
            messages.append(message(number, "assistant", section(number // 2)[: 600 + (number % 3) * 700], reasoning))
    return messages


def wait(milliseconds: float) -> None:
    loop = QEventLoop()
    deadline = time.perf_counter() + milliseconds / 1000
    while time.perf_counter() < deadline:
        loop.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)


def stream_share(text: str) -> float:
    """(a): time in the view / the reply's duration, streamed at the engine's pace through the frame timer."""
    view = TimedView()
    view.add_turn("You", "Explain everything, with code.", css_class="user")
    view.begin_reply("model")
    pieces = deltas(text)
    sent = 0
    started = time.perf_counter()
    feeder = QTimer()
    feeder.setInterval(2)

    def feed() -> None:
        nonlocal sent
        due = min(len(pieces), int((time.perf_counter() - started) * TOKENS_PER_SECOND) + 1)
        for piece in pieces[sent:due]:
            view.append_reply(piece)
        sent = due

    feeder.timeout.connect(feed)
    view.busy = 0.0
    feeder.start()
    loop = QEventLoop()
    while sent < len(pieces):
        loop.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
    feeder.stop()
    wait(2 * FRAME_MS)  # the last frame
    duration = time.perf_counter() - started
    busy = view.busy
    view.end_reply("done")
    view.close()
    return busy / duration


def update_costs(text: str, earlier: list[Message]) -> tuple[float, float]:
    """(b): seconds spent by the last LAST_UPDATES updates, one frame of text each: (flush and a synchronous repaint
    of the whole view, the flush alone)."""
    view = TimedView()
    view.show_thread(earlier)
    while view.loading_older:  # the whole conversation, as a reader would have it
        wait(FRAME_MS)
    view.add_turn("You", "Explain everything, with code.", css_class="user")
    view.begin_reply("model")
    per_frame = max(1, round(TOKENS_PER_SECOND * FRAME_MS / 1000))
    pieces = deltas(text)
    costs, flushes = [], []
    for index in range(0, len(pieces), per_frame):
        for piece in pieces[index : index + per_frame]:
            view.append_reply(piece)
        started = time.perf_counter()
        view.flush()
        flushed = time.perf_counter()
        view.viewport().repaint()
        costs.append(time.perf_counter() - started)
        flushes.append(flushed - started)
    view.end_reply("done")
    view.close()
    return sum(costs[-LAST_UPDATES:]), sum(flushes[-LAST_UPDATES:])


def open_thread(messages: list[Message]) -> tuple[float, float, float]:
    """(c): (ms to the first paint, ms until everything is rendered, longest event-loop gap in ms meanwhile)."""
    view = TimedView()
    wait(50)
    started = time.perf_counter()
    view.show_thread(messages)
    view.viewport().repaint()
    first_paint = time.perf_counter() - started
    longest, last = 0.0, time.perf_counter()
    loop = QEventLoop()
    while view.loading_older:
        loop.processEvents(QEventLoop.ProcessEventsFlag.AllEvents)
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    everything = time.perf_counter() - started
    assert messages[0].content.splitlines()[0] in view.toPlainText()
    view.close()
    return first_paint * 1000, everything * 1000, longest * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-stream", action="store_true", help="skip (a), which streams for 40 s a round")
    args = parser.parse_args()
    app = QApplication(sys.argv)
    long_text, short_text = reply_text(32_000), reply_text(8_000)
    earlier = conversation(20)
    thousand = conversation(1000)

    shares: list[float] = []
    short_costs: list[tuple[float, float]] = []
    long_costs: list[tuple[float, float]] = []
    earlier_costs: list[tuple[float, float]] = []
    openings: list[tuple[float, float, float]] = []
    for round_number in range(args.rounds):
        scenarios = [
            lambda: short_costs.append(update_costs(short_text, [])),
            lambda: long_costs.append(update_costs(long_text, [])),
            lambda: earlier_costs.append(update_costs(long_text, earlier)),
            lambda: openings.append(open_thread(thousand)),
        ]
        for index in range(len(scenarios)):  # a different order each round: A,B,C,D then B,C,D,A, ...
            scenarios[(index + round_number) % len(scenarios)]()
        if not args.skip_stream:
            shares.append(stream_share(long_text))
    del app

    def ms(values: list[tuple[float, float]]) -> str:
        return (
            f"{statistics.median(total for total, _ in values) * 1000:.1f} ms "
            f"(flush alone {statistics.median(flush for _, flush in values) * 1000:.1f} ms)"
        )

    print(f"rounds={args.rounds}, medians; {TOKENS_PER_SECOND} tokens/s of {CHARS_PER_TOKEN} characters")
    if shares:
        share = statistics.median(shares)
        print(f"(a) view time / reply time, 32,000 characters streamed: {share:.3f} (target <= 0.10)")
    print(
        f"(b) last {LAST_UPDATES} updates: 8,000 chars {ms(short_costs)},\n    32,000 chars {ms(long_costs)},\n"
        f"    32,000 chars after 20 messages {ms(earlier_costs)}"
    )
    ratios = [long[0] / short[0] for long, short in zip(long_costs, short_costs, strict=True)]
    earlier_ratios = [after[0] / alone[0] for after, alone in zip(earlier_costs, long_costs, strict=True)]
    print(f"    32,000 / 8,000: {statistics.median(ratios):.2f} (target <= 1.5)")
    print(f"    20 earlier messages / none: {statistics.median(earlier_ratios):.2f} (target <= 1.2)")
    first, total, gap = (statistics.median(values) for values in zip(*openings, strict=True))
    print(
        f"(c) 1,000 messages: first paint {first:.0f} ms (target <= 300), all rendered {total:.0f} ms, "
        f"longest event-loop gap while rendering {gap:.0f} ms"
    )


if __name__ == "__main__":
    main()
