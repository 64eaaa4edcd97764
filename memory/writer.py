"""ChunkWriter: an ordered write-behind queue between the encoder and Redis.

The encoder must never wait for Redis on the hot path, and RAM must never grow without bound when
Redis is slow. So writes go to one background thread through a queue bounded both in jobs and in
bytes; when it is full, ``submit`` blocks (up to a timeout) — backpressure the producer can see and
report as lag — instead of buffering more.

A job is acknowledged (its Future resolves) only after Redis has executed it. Connection errors
(Redis restarting, loading its AOF, network blips) are retried with backoff for up to ``retry_for``
seconds; every step of MemoryStore is idempotent, so re-running one whose reply was lost is safe.
A job that still fails, or fails for another reason, makes the writer *failed*: that job and every
later one raise WriteFailed, and so do ``flush`` and ``check``. Nothing is ever dropped silently.
Housekeeping jobs (retention, TTL refreshes) are submitted with ``fatal=False``: their failure is
logged, counted (``stats["housekeeping_failed"]``) and set on their own Future, and the writer goes
on, because losing queued chunks for a missed compaction would trade memory for data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import redis

from scenekv.errors import UserError

from .store import MemoryStore

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)


class WriteFailed(UserError):
    code = "memory_write_failed"


class WriterBusy(UserError):
    """The write queue stayed full for the whole timeout: Redis is too slow or down."""

    code = "memory_backpressure"


class ChunkWriter:
    def __init__(
        self,
        store: MemoryStore,
        *,
        max_jobs: int = 16,
        max_bytes: int = 64 << 20,
        retry_for: float = 60.0,
        put_timeout: float | None = 60.0,
        name: str = "scenekv-writer",
    ) -> None:
        if max_jobs < 1 or max_bytes < 1:
            raise ValueError("max_jobs and max_bytes must be >= 1")
        self.store = store
        self.max_jobs, self.max_bytes = max_jobs, max_bytes
        self.retry_for, self.put_timeout = retry_for, put_timeout
        self._jobs: deque[tuple[Callable[[MemoryStore], Any], int, Future, str]] = deque()
        self._cond = threading.Condition()
        self._pending_jobs = 0  # queued + in flight
        self._pending_bytes = 0
        self._error: BaseException | None = None
        self._closed = False
        self.stats = {
            "submitted": 0,
            "acknowledged": 0,
            "failed": 0,
            "housekeeping_failed": 0,
            "retries": 0,
            "blocked_s": 0.0,
            "max_pending_bytes": 0,
            "max_pending_jobs": 0,
            "bytes_written": 0,
        }
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- producer side ----------------------------------------------------------------------------
    @property
    def pending_jobs(self) -> int:
        return self._pending_jobs

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def failed(self) -> BaseException | None:
        return self._error

    def submit(
        self,
        fn: Callable[[MemoryStore], T],
        *,
        nbytes: int = 0,
        timeout: float | None | str = "default",
        label: str = "",
        fatal: bool = True,
    ) -> Future[T]:
        """Queue ``fn(store)``; blocks while the queue is full (at most ``timeout`` s, then WriterBusy).

        ``fatal=False``: a failure of this job fails only its Future, not the writer."""
        timeout = self.put_timeout if timeout == "default" else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        start = time.monotonic()
        with self._cond:
            while True:
                self._raise_if_unusable()
                if self._pending_jobs == 0 or (
                    self._pending_jobs < self.max_jobs and self._pending_bytes + nbytes <= self.max_bytes
                ):
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self.stats["blocked_s"] += time.monotonic() - start
                    raise WriterBusy(
                        f"Redis writes are {self._pending_jobs} jobs / {self._pending_bytes} bytes behind "
                        f"for {timeout:.1f}s: Redis at {self.store.url} is too slow or unreachable"
                    )
                self._cond.wait(left)
            self.stats["blocked_s"] += time.monotonic() - start
            future: Future[T] = Future()
            self._jobs.append((fn, nbytes, future, label, fatal))
            self._pending_jobs += 1
            self._pending_bytes += nbytes
            self.stats["submitted"] += 1
            self.stats["max_pending_bytes"] = max(self.stats["max_pending_bytes"], self._pending_bytes)
            self.stats["max_pending_jobs"] = max(self.stats["max_pending_jobs"], self._pending_jobs)
            self._cond.notify_all()
            return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything submitted so far is acknowledged; raise WriteFailed if any write failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending_jobs and self._error is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise WriterBusy(f"{self._pending_jobs} Redis writes still pending after {timeout:.1f}s")
                self._cond.wait(left)
        self.check()

    def check(self) -> None:
        """Raise WriteFailed if a write has failed (callers on the hot path poll this cheaply)."""
        if self._error is not None:
            raise WriteFailed(f"writing stream memory to Redis failed: {self._error}") from self._error

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, then stop the thread. Pending writes are completed, never abandoned silently."""
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join(timeout=5)

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _raise_if_unusable(self) -> None:
        if self._closed:
            raise RuntimeError("ChunkWriter is closed")
        self.check()

    # -- writer thread ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                fn, nbytes, future, label, fatal = self._jobs.popleft()
            if self._error is not None:
                exc: BaseException | None = WriteFailed(f"skipped after an earlier failure: {self._error}")
                result = None
            else:
                result, exc = self._attempt(fn, label)
            with self._cond:
                self._pending_jobs -= 1
                self._pending_bytes -= nbytes
                if exc is None:
                    self.stats["acknowledged"] += 1
                    self.stats["bytes_written"] += nbytes
                elif not fatal and self._error is None:
                    self.stats["housekeeping_failed"] += 1
                else:
                    self.stats["failed"] += 1
                    if self._error is None:
                        self._error = exc
                self._cond.notify_all()
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)

    def _attempt(self, fn, label: str) -> tuple[Any, BaseException | None]:
        first_failure = None
        delay = 0.05
        while True:
            try:
                return fn(self.store), None
            except RETRYABLE as exc:
                now = time.monotonic()
                first_failure = first_failure or now
                if now - first_failure > self.retry_for:
                    log.error("giving up on Redis write %s after %.0fs: %s", label, self.retry_for, exc)
                    return None, exc
                self.stats["retries"] += 1
                log.warning("Redis write %s failed (%s); retrying in %.2fs", label, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except Exception as exc:  # not retryable: a bug or a gone stream; report, never drop
                log.error("Redis write %s failed: %s", label, exc)
                return None, exc
