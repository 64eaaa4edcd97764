"""The writer lease of a stream, renewed on its own thread while the stream is open.

Only the lease holder writes a stream (every write script checks ``:owner``). Renewing it behind
queued writes would let a busy writer's lease lapse, so a timer renews it every ``lease_s / 3``,
whether frames arrive or not.
"""

from __future__ import annotations

import logging
import threading

import redis

from .streams import StreamRecords

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews a stream's writer lease every lease_s / 3 on its own thread, independent of frames.

    It stops when told to, when the RollingMemory that started it is garbage collected, or when the
    lease turns out to be held by another token (``lost`` says why).
    """

    def __init__(self, store: StreamRecords, sid: str, token: str, lease_s: float) -> None:
        self.store, self.sid, self.token, self.lease_s = store, sid, token, lease_s
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"scenekv-lease-{sid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not self.store.claim(self.sid, self.token, self.lease_s):
                    self.lost = f"stream {self.sid!r}: another process took over this stream"
                    log.error("%s", self.lost)
                    return
            except (redis.RedisError, OSError) as exc:  # Redis down for a moment: try again next tick
                log.warning("stream %s: renewing the writer lease failed: %s", self.sid, exc)

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
