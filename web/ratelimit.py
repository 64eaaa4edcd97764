"""Per-connection rate limits: a token bucket, so short bursts pass and sustained floods do not."""

from __future__ import annotations

import time


class TokenBucket:
    """``rate`` tokens per second refill up to ``burst``; ``take()`` is False when empty."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic) -> None:
        self.rate, self.burst, self._clock = float(rate), float(burst), clock
        self.tokens = float(burst)
        self._at = clock()

    def take(self, n: float = 1.0) -> bool:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False
