"""Whose turn it is to generate: one request at a time, the app's own chats first, API traffic queued and bounded.

llama.cpp here serves one sequence at a time, so requests wait. The app's own requests (the window, the CLI) go
ahead of every waiting API request, so a busy API never starves the user's chat: it waits at most for the one
API reply already generating. API requests past the queue limit are refused at once (HTTP 429), with an estimate
of when to retry, instead of piling up until clients time out.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field

APP, API = 0, 1  # priorities: lower goes first
FIRST_GUESS_SECONDS = 10.0  # one request's duration before any has been measured
WAIT_STEP = 0.1  # how often a waiting request checks whether its client is still there


class QueueFullError(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many requests are waiting; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(order=True)
class Ticket:
    priority: int
    number: int
    started: float = field(compare=False, default=0.0)  # when it began generating


class Turns:
    def __init__(self, max_waiting_api: int) -> None:
        self.max_waiting_api = max_waiting_api
        self._condition = threading.Condition()
        self._waiting: list[Ticket] = []
        self._generating: Ticket | None = None
        self._numbers = itertools.count()
        self._recent_seconds: float | None = None  # a running estimate of one request's duration, for Retry-After

    def admit(self, priority: int) -> Ticket:
        """A place in the queue; QueueFullError for an API request past the limit."""
        with self._condition:
            waiting_api = sum(1 for ticket in self._waiting if ticket.priority == API)
            must_wait = self._generating is not None or bool(self._waiting)
            if priority == API and must_wait and waiting_api >= self.max_waiting_api:
                ahead = waiting_api + (self._generating is not None)
                each = self._recent_seconds if self._recent_seconds is not None else FIRST_GUESS_SECONDS
                raise QueueFullError(max(1, math.ceil(ahead * each)))
            ticket = Ticket(priority, next(self._numbers))
            self._waiting.append(ticket)
            return ticket

    def wait(self, ticket: Ticket, cancel: threading.Event) -> bool:
        """Block until `ticket` may generate (True), or until `cancel` is set (False: it leaves the queue)."""
        with self._condition:
            while self._generating is not None or min(self._waiting) is not ticket:
                if cancel.is_set():
                    self._waiting.remove(ticket)
                    self._condition.notify_all()
                    return False
                self._condition.wait(WAIT_STEP)
            self._waiting.remove(ticket)
            self._generating = ticket
            ticket.started = time.monotonic()
            return True

    def withdraw(self, ticket: Ticket) -> None:
        """Drop a ticket that will never generate (its client left before its turn); harmless otherwise."""
        with self._condition:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                self._condition.notify_all()

    def done(self, ticket: Ticket) -> None:
        with self._condition:
            if self._generating is ticket:
                self._generating = None
                seconds = time.monotonic() - ticket.started
                # The first measurement replaces the guess outright: a guess averaged in lingers for many requests.
                previous = self._recent_seconds
                self._recent_seconds = seconds if previous is None else 0.8 * previous + 0.2 * seconds
            self._condition.notify_all()
