"""A bounded queue that keeps the newest items: the lag policy of live and push sources.

A live source cannot wait for a slow consumer (the camera does not pause), and an unbounded buffer
turns a slow consumer into ever-growing lag and memory. So the producer never blocks: when the queue
is full the OLDEST item is discarded and counted, and the consumer always gets the most recent frames.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """Raised by :meth:`LatestQueue.get` once the queue is closed and drained."""


class LatestQueue(Generic[T]):
    def __init__(self, maxsize: int = 2) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque[tuple[T, float]] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T) -> bool:
        """Add an item without blocking; returns False if one had to be dropped to make room."""
        with self._cond:
            if self._closed:
                return False
            dropped = len(self._items) >= self.maxsize
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append((item, time.monotonic()))
            self._cond.notify()
            return not dropped

    def get(self, timeout: float | None = None) -> tuple[T, float]:
        """Oldest queued item and how long it waited (s). Raises TimeoutError, or Closed when drained.

        Waits in short slices so that Ctrl-C reaches a main thread blocked here.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise Closed
                remaining = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if remaining <= 0:
                    raise TimeoutError
                self._cond.wait(remaining)
            item, queued_at = self._items.popleft()
            return item, time.monotonic() - queued_at

    def close(self, *, discard: bool = False) -> None:
        """No more puts; consumers drain what is left (or nothing, with ``discard``) and then stop."""
        with self._cond:
            self._closed = True
            if discard:
                self._items.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)
