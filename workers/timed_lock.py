"""A lock that counts how long its callers waited for it and held it.

Every forward on the encoder's model runs under one lock (frames, answers, captions). How long calls
queue for it says whether the model is the bottleneck, so /metrics shows both totals.
"""

from __future__ import annotations

import threading
import time


class TimedLock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entered = 0.0
        self.wait_s = 0.0  # summed over every acquisition
        self.held_s = 0.0

    def __enter__(self) -> TimedLock:
        t0 = time.perf_counter()
        self._lock.acquire()
        self._entered = time.perf_counter()
        self.wait_s += self._entered - t0
        return self

    def __exit__(self, *exc) -> None:
        self.held_s += time.perf_counter() - self._entered
        self._lock.release()
