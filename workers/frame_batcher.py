"""Frames of many streams through the vision tower together: schedule -> execute -> update, with
other model work (scene captions) interleaved one step between batches.

The vision tower is almost all of a frame's cost and batches well, but each append call brings one
stream's frames. Callers (the encoder actor's threads, one per call) submit their frames and wait;
one scheduler thread repeatedly takes what is pending and runs it as one batch:

- **schedule**: requests in arrival order, at most one per stream (a stream's frames stay in order),
  until ``max_frames`` (the first request always goes, however large);
- **execute**: one call for the whole batch (``StreamHub.append_batch``: one vision forward, then
  each stream's own prefill); if the batch as a whole fails, each request is run alone, so one
  stream's bad frame never fails another stream;
- **update**: every caller gets its own result or error; the batch's size goes to the figures;
- **between**: one step of background work (``between``: a caption's plan, one of its tokens, or its
  store write), so a scene close delays the next batch by one caption step, never by a caption.

Arrival order with one request per stream per batch means no stream waits behind another's backlog
for more than one batch. Plain Python: no Ray here (workers/actors.py is the Ray shell).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Frames = Sequence  # of (pts, RGB uint8 array)
BATCH_STREAM_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
log = logging.getLogger(__name__)


@dataclass
class _Request:
    sid: str
    frames: Frames
    submitted: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None


@dataclass(frozen=True)
class BatchPlan:
    requests: list[_Request]

    @property
    def frames(self) -> int:
        return sum(len(r.frames) for r in self.requests)


class Histogram:
    """Counts per upper bound (not cumulative), sum and count: what prometheus_client's histogram
    families are built from on the gateway side."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one: above every bound
        self.sum, self.count = 0.0, 0

    def observe(self, value: float) -> None:
        i = next((k for k, b in enumerate(self.buckets) if value <= b), len(self.buckets))
        self.counts[i] += 1
        self.sum += value
        self.count += 1

    def as_dict(self) -> dict:
        return {
            "buckets": list(self.buckets),
            "counts": list(self.counts),
            "sum": self.sum,
            "count": self.count,
        }


class FrameBatcher:
    def __init__(
        self,
        execute: Callable[[list[tuple[str, Frames]]], list],
        *,
        max_frames: int = 32,
        between: Callable[[], float | None] | None = None,
    ) -> None:
        """``execute``: runs a batch of (stream id, frames) and returns one result or exception each.
        ``between``: one step of other work, run after each batch and while no frames wait; returns
        None when it has nothing left, 0.0 when it may have more now, else seconds until it has."""
        self._execute = execute
        self._between = between
        self.between_errors = 0
        self.max_frames = max_frames
        self._pending: deque[_Request] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.batch_streams = Histogram(BATCH_STREAM_BUCKETS)  # distinct streams in each batch
        self.batch_frames = Histogram((1, 2, 4, 8, 16, 32, 64, 128))
        self.queue_wait_s = 0.0  # summed over requests: submit -> batch start
        self._thread = threading.Thread(target=self._loop, name="frame-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return len(self._pending)

    def submit(self, sid: str, frames: Frames) -> dict:
        """Encode ``frames`` into stream ``sid`` in the next batch that can take them; returns that
        stream's result or raises its error."""
        request = _Request(sid, frames)
        with self._cv:
            if self._closed:
                raise RuntimeError("the frame batcher is closed")
            self._pending.append(request)
            self._cv.notify()
        request.done.wait()
        if isinstance(request.result, BaseException):
            raise request.result
        return request.result

    def close(self, timeout: float = 60.0) -> None:
        """Refuse what is still queued (its callers get an error now, not a batch on a hub that is
        closing) and wait for the batch in progress."""
        with self._cv:
            self._closed = True
            queued, self._pending = list(self._pending), deque()
            self._cv.notify()
        for r in queued:
            r.result = RuntimeError("the encoder is shutting down")
            r.done.set()
        self._thread.join(timeout=timeout)

    # -- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        idle: float | None = None  # how long to wait for frames: forever while nothing else waits
        while True:
            plan = self.schedule(idle)
            if plan is None:
                return
            if plan.requests:
                self.update(plan, self.run(plan))
            idle = self._step_between()

    def _step_between(self) -> float | None:
        if self._between is None:
            return None
        try:
            return self._between()
        except Exception:  # the loop must live on; the work's own errors are its own to report
            self.between_errors += 1
            log.exception("background step between batches failed")
            return 1.0

    def schedule(self, idle: float | None = None) -> BatchPlan | None:
        """Wait for frames (at most ``idle`` s; forever if None); take requests in arrival order, one
        per stream, up to ``max_frames``. An empty plan: nothing came, run the background work."""
        with self._cv:
            if idle is None or idle > 0:
                deadline = None if idle is None else time.monotonic() + idle
                while not self._pending and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._cv.wait(remaining)
            if self._closed:
                return None
            taken, streams, frames, left = [], set(), 0, deque()
            while self._pending:
                r = self._pending.popleft()
                if r.sid in streams or (taken and frames + len(r.frames) > self.max_frames):
                    left.append(r)
                    continue
                taken.append(r)
                streams.add(r.sid)
                frames += len(r.frames)
            self._pending = left
            return BatchPlan(taken)

    def run(self, plan: BatchPlan) -> list:
        now = time.perf_counter()
        self.queue_wait_s += sum(now - r.submitted for r in plan.requests)
        try:
            return self._run([(r.sid, r.frames) for r in plan.requests])
        except BaseException as exc:  # the loop must live on: its callers wait for it
            if len(plan.requests) == 1 or not isinstance(exc, Exception):
                return [exc] * len(plan.requests)
            # something in the batch broke it as a whole (e.g. one undecodable image): alone, each
            # request gets its own result or its own error
            return [self._run_alone(r) for r in plan.requests]

    def _run(self, batch: list[tuple[str, Frames]]) -> list:
        results = self._execute(batch)
        if len(results) != len(batch):
            raise RuntimeError(f"a batch of {len(batch)} requests returned {len(results)} results")
        return results

    def _run_alone(self, r: _Request):
        try:
            return self._run([(r.sid, r.frames)])[0]
        except BaseException as exc:
            return exc

    def update(self, plan: BatchPlan, results: list) -> None:
        self.batch_streams.observe(len(plan.requests))
        self.batch_frames.observe(plan.frames)
        for r, result in zip(plan.requests, results, strict=True):
            r.result = result
            r.done.set()
