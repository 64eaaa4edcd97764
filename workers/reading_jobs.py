"""Frame readings as scheduled work: the content index is filled one model read at a time, between
vision batches, never inside an append.

Each stream has one job: a cursor (``after``, the pts of the last frame done) that walks the stream's
kept frames in time order. ``run`` reads the next frame after it (workers/frame_reader.py: a step
that finds the frame and hands over its two reads, the object and the background, as generations;
then the store write) and returns its pts, or None when no frame follows yet; the job then waits
until the stream appends (``wake``). In order, so the index's newest reading says how far it is
complete (``read_through``): a restarted encoder, or a stream recorded before the index existed,
starts its job there and reads what is stored after it.

Scheduling is the caption queue's (workers/caption_jobs.py): one step per call, the frame in progress
first, then streams in turn; the handed-over reads decode in an encoder scheduler's packed steps
(``decode``: a few streams' frames at a time, beside the answers) or here, one forward a step; a
failed frame is retried after a back-off (0.25, 0.5, 1, 2 s) and left unread after
``READING_TRIES`` (the cursor moves past it); ``fatal`` errors (the stream's memory is gone or taken
over) drop the job. Plain Python: no Ray here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .caption_jobs import CAPTION_TRIES, JOBS_AT_ONCE, Decoding, advance, next_due, retry_delay

log = logging.getLogger(__name__)

READING_TRIES = CAPTION_TRIES


@dataclass
class ReadingJob:
    sid: str
    after: float | None  # the last frame done (read, or given up); None: none yet
    current: float | None = None  # the frame being read, once found
    tries: int = 0  # failed tries of the current frame
    not_before: float = 0.0
    steps: Iterator[Any] | None = None
    decoding: Decoding | None = None  # the reads its last step handed over
    waiting: bool = False  # caught up: nothing to read until the stream appends

    @property
    def busy(self) -> bool:
        return self.decoding is not None and self.decoding.busy


@dataclass
class ReadingCounts:
    steps: int = 0
    frames: int = 0
    retried: int = 0
    given_up: int = 0


@dataclass
class ReadingQueue:
    """One job per stream; ``step`` advances the frame in progress, else the first due job.

    ``run``: (job) -> an iterator whose ``next()`` is one unit of model work, yielding None or
    generations to decode before the next (caption_jobs.Decoding), and whose return value
    (StopIteration's) is the pts of the frame it read and stored, or None when no frame follows
    ``job.after``. ``keep``: whether a caught-up job stays (its stream is open here and will append).
    ``decode``: where handed-over generations decode (an encoder scheduler's ``adopt``; None: here).
    """

    run: Callable[[ReadingJob], Iterator[Any]]
    fatal: tuple[type[BaseException], ...] = ()
    keep: Callable[[str], bool] = lambda sid: True
    decode: Callable[[Any], Any] | None = None
    jobs: dict[str, ReadingJob] = field(default_factory=dict)
    counts: ReadingCounts = field(default_factory=ReadingCounts)

    def add(self, sid: str, after: Callable[[], float | None]) -> ReadingJob:
        """The stream's job, woken; a new one starts after ``after()`` (read only when it is new)."""
        job = self.jobs.get(sid)
        if job is None:
            job = self.jobs[sid] = ReadingJob(sid, after())
        job.waiting = False
        return job

    def wake(self, sid: str) -> None:
        """The stream appended frames: its job, if any, has work again."""
        job = self.jobs.get(sid)
        if job is not None:
            job.waiting = False

    def drop(self, sid: str) -> bool:
        job = self.jobs.pop(sid, None)
        if job is not None and job.decoding is not None:
            job.decoding.abandon()
        return job is not None

    def due(self, sid: str | None = None) -> int:
        """Jobs with frames to read (or that do not know yet)."""
        return sum(1 for j in list(self.jobs.values()) if not j.waiting and (sid is None or j.sid == sid))

    def step(self, sid: str | None = None) -> float | None:
        """One unit of reading work (of ``sid``'s job only, if given). None: nothing to do; 0.0: maybe
        more now; else seconds until a retry is due (or, while a scheduler decodes the reads, until
        it is worth looking again). The caller holds the model lock."""
        now = time.monotonic()
        jobs = list(self.jobs.values())
        room = sum(j.busy for j in jobs) < JOBS_AT_ONCE
        mine = [j for j in jobs if not j.waiting and (sid is None or j.sid == sid)]
        job, wait = next_due(mine, now, room)
        if job is None:
            return wait
        self.counts.steps += 1
        try:
            if job.steps is None:
                job.current = None
                job.steps = self.run(job)
            advance(job, self.decode)
            return 0.0
        except StopIteration as stop:
            job.steps = None
            if stop.value is None:  # caught up
                job.waiting = True
                if not self.keep(job.sid):
                    self.jobs.pop(job.sid, None)
                return 0.0
            job.after, job.tries = stop.value, 0
            self.counts.frames += 1
        except self.fatal as exc:
            self.jobs.pop(job.sid, None)
            log.warning("readings of %s dropped: %s: %s", job.sid, type(exc).__name__, exc)
            return 0.0
        except Exception as exc:
            self._failed(job, exc)
        if self.jobs.pop(job.sid, None) is job:  # to the back: other streams' frames go next
            self.jobs[job.sid] = job
        return 0.0

    def _failed(self, job: ReadingJob, exc: Exception) -> None:
        job.steps, job.decoding = None, None
        job.tries += 1
        log.warning(
            "reading of frame %s of %s failed (try %d of %d): %s: %s",
            job.current,
            job.sid,
            job.tries,
            READING_TRIES,
            type(exc).__name__,
            exc,
        )
        if job.tries < READING_TRIES:
            self.counts.retried += 1
            job.not_before = time.monotonic() + retry_delay(job.tries)
            return
        self.counts.given_up += 1
        job.tries = 0
        if job.current is not None:  # left unread: the next frame goes on
            job.after = job.current
        else:  # the frame could not even be found: wait for the stream's next append
            job.waiting = True
