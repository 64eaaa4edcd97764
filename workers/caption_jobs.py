"""Scene captions as scheduled work, one decode step at a time, never inside the append that closed
the scene.

A caption is a 32-token decode: run inside ``append`` under the model lock it stalled every stream's
ingest for the whole caption. Here a closed scene becomes a ``CaptionJob`` whose steps (plan, each
token, the store write) are advanced one at a time by whoever holds the model lock: the encoder's
scheduler between vision batches, or a caller that must wait for the captions (a stream's end).
A job that fails is retried after a back-off and given up after ``CAPTION_TRIES``; it never fails a
frame. Plain Python: no Ray here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

CAPTION_TRIES = 5  # a scene's caption is tried this often before it is left out
RETRY_AFTER_S = 0.25  # first back-off; doubled on each failed try (0.25, 0.5, 1, 2 s)


def retry_delay(tries: int) -> float:
    """Seconds before the next try after ``tries`` failed ones (frame readings back off the same)."""
    return RETRY_AFTER_S * 2 ** (tries - 1)


def next_due(jobs: list, now: float) -> tuple[object | None, float | None]:
    """(the job to step, None), or (None, seconds until a retry is due; None if no job waits).

    The job in progress first (one context on the device at a time), else the first whose back-off
    has passed; caption and reading queues schedule alike."""
    job = next((j for j in jobs if j.steps is not None), None)
    job = job or next((j for j in jobs if j.not_before <= now), None)
    if job is None:
        return None, min((j.not_before - now for j in jobs), default=None)
    return job, None


@dataclass
class CaptionJob:
    sid: str
    index: int
    start: float
    end: float
    tries: int = 0  # failed tries so far
    not_before: float = 0.0  # monotonic time before which a retry does not start
    steps: Iterator[None] | None = None  # the running try; None between tries
    text: str | None = None  # the stored caption, once done
    given_up: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return self.sid, self.index

    @property
    def pending(self) -> bool:
        return self.text is None and not self.given_up


@dataclass
class CaptionCounts:
    steps: int = 0
    done: int = 0
    retried: int = 0
    given_up: int = 0


@dataclass
class CaptionQueue:
    """Jobs in the order their scenes closed; ``step`` advances the first one that is due.

    ``run``: (job) -> an iterator whose ``next()`` is one unit of model work and whose return value
    (StopIteration's) is the stored caption. ``fatal``: exceptions that mean the stream's memory is
    unusable here: the job is dropped (the stream's own calls report that), not retried.
    """

    run: Callable[[CaptionJob], Iterator[None]]
    fatal: tuple[type[BaseException], ...] = ()
    jobs: dict[tuple[str, int], CaptionJob] = field(default_factory=dict)
    left_out: set[tuple[str, int]] = field(default_factory=set)  # given up: not queued again unasked
    counts: CaptionCounts = field(default_factory=CaptionCounts)

    def add(self, sid: str, index: int, start: float, end: float) -> CaptionJob:
        self.left_out.discard((sid, index))
        job = self.jobs.get((sid, index))
        if job is None:
            job = self.jobs[(sid, index)] = CaptionJob(sid, index, start, end)
        return job

    def drop(self, sid: str) -> int:
        """Forget ``sid``'s jobs (its memory is gone); how many were dropped."""
        keys = [k for k in self.jobs if k[0] == sid]
        for k in keys:
            del self.jobs[k]
        self.left_out = {k for k in self.left_out if k[0] != sid}
        return len(keys)

    def pending(self, sid: str | None = None) -> int:
        return sum(1 for job in self.jobs.values() if sid is None or job.sid == sid)

    def step(self, sid: str | None = None) -> float | None:
        """One unit of work on the first due job (of ``sid`` only, if given). Returns None when no
        job is waiting, 0.0 when there may be more to do now, else the seconds until a retry is due.
        The caller holds the model lock."""
        now = time.monotonic()
        job, wait = next_due([j for j in list(self.jobs.values()) if sid is None or j.sid == sid], now)
        if job is None:
            return wait
        self.counts.steps += 1
        try:
            if job.steps is None:
                job.steps = self.run(job)
            next(job.steps)
            return 0.0
        except StopIteration as stop:
            job.text = stop.value if isinstance(stop.value, str) else ""
            self.counts.done += 1
        except self.fatal as exc:
            job.given_up = True
            log.warning(
                "caption of scene %d of %s dropped: %s: %s", job.index, job.sid, type(exc).__name__, exc
            )
        except Exception as exc:
            job.tries += 1
            job.steps = None
            log.warning(
                "caption of scene %d of %s failed (try %d of %d): %s: %s",
                job.index,
                job.sid,
                job.tries,
                CAPTION_TRIES,
                type(exc).__name__,
                exc,
            )
            if job.tries < CAPTION_TRIES:
                self.counts.retried += 1
                job.not_before = time.monotonic() + retry_delay(job.tries)
                if self.jobs.pop(job.key, None) is job:  # to the back: other scenes go first
                    self.jobs[job.key] = job  # (unless the stream was dropped meanwhile)
                return 0.0
            job.given_up = True
            self.counts.given_up += 1
            self.left_out.add(job.key)
        self.jobs.pop(job.key, None)
        return 0.0
