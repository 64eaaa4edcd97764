"""A first-come, first-served lock that counts how long its callers waited for it and held it.

Every forward on the encoder's model runs under one lock (frame batches, answer tokens, caption
steps). It is FIFO because the work interleaves by taking it once per step: with a plain
``threading.Lock`` the thread that just released it (an answer's next token, the scheduler's next
caption step) usually takes it again before a waiting thread wakes, so a waiting batch could wait
for a whole answer; here it waits for the steps queued ahead of it, one each. How long calls
queue for it says whether the model is the bottleneck, so /metrics shows both totals.
"""

from __future__ import annotations

import threading
import time


class TimedLock:
    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._tickets = 0  # handed out
        self._serving = 0  # the ticket that holds the lock now (or may take it)
        self._abandoned: set[int] = set()  # tickets whose waiter was interrupted: skipped
        self._entered = 0.0
        self.wait_s = 0.0  # summed over every acquisition
        self.held_s = 0.0

    def __enter__(self) -> TimedLock:
        t0 = time.perf_counter()
        with self._cv:
            ticket = self._tickets
            self._tickets += 1
            try:
                while ticket != self._serving:
                    self._cv.wait()
            except BaseException:  # never leave a ticket that nobody will release
                if ticket == self._serving:
                    self._advance()
                else:
                    self._abandoned.add(ticket)
                raise
        self._entered = time.perf_counter()
        self.wait_s += self._entered - t0
        return self

    def __exit__(self, *exc) -> None:
        self.held_s += time.perf_counter() - self._entered
        with self._cv:
            self._advance()

    def _advance(self) -> None:  # the caller holds _cv
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cv.notify_all()
