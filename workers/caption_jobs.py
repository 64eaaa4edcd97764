"""Scene captions as scheduled work, one step at a time, never inside the append that closed the
scene.

A caption is a 32-token decode: run inside ``append`` under the model lock it stalled every stream's
ingest for the whole caption. Here a closed scene becomes a ``CaptionJob`` whose steps (plan, the
decode, the store write) are advanced one at a time by whoever runs the model: the encoder's
scheduler between vision batches, or a caller that must wait for the captions (a stream's end).
A job's step may hand over generations (vlm/generate.py) to decode before its next step
(``Decoding``): with a ``decode`` function (an encoder scheduler's ``adopt``) they decode in its
packed steps together with the answers, up to ``JOBS_AT_ONCE`` jobs at a time; without one, here,
one forward a step. A job that fails is retried after a back-off and given up after
``CAPTION_TRIES``; it never fails a frame. Plain Python: no Ray here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CAPTION_TRIES = 5  # a scene's caption is tried this often before it is left out
RETRY_AFTER_S = 0.25  # first back-off; doubled on each failed try (0.25, 0.5, 1, 2 s)
JOBS_AT_ONCE = 2  # jobs of a queue whose generations a scheduler decodes at once
BUSY_POLL_S = 0.05  # how soon to look again while a scheduler decodes the jobs' generations


def retry_delay(tries: int) -> float:
    """Seconds before the next try after ``tries`` failed ones (frame readings back off the same)."""
    return RETRY_AFTER_S * 2 ** (tries - 1)


def next_due(jobs: Sequence, now: float, room: bool = True) -> tuple[Any, float | None]:
    """(the job to step, None), or (None, seconds until one may be; None if no job waits).

    A job in progress first (unless a scheduler is decoding its generations: one context on the
    device at a time where they decode here), else, while there is ``room`` (fewer than
    ``JOBS_AT_ONCE`` jobs decoding in a scheduler), the first whose back-off has passed and whose
    stream has none in progress (a stream's captions are stored in order); caption and reading
    queues schedule alike."""
    started = [j for j in jobs if j.steps is not None]
    job = next((j for j in started if not j.busy), None)
    if job is None and room:
        streams = {j.sid for j in started}
        job = next(
            (j for j in jobs if j.steps is None and j.not_before <= now and j.sid not in streams), None
        )
    if job is not None:
        return job, None
    waits = [j.not_before - now for j in jobs if j.steps is None]
    if started or any(w <= 0 for w in waits):  # a scheduler decodes for them: look again soon
        waits.append(BUSY_POLL_S)
    return None, min((w for w in waits if w > 0), default=None)


@dataclass
class Decoding:
    """The generations a job's step handed over, decoded before its next step: by a scheduler
    (``requests``: what its ``adopt`` returned) or alone, one forward a ``step``."""

    generations: list
    requests: list | None = None

    @classmethod
    def of(cls, handed: Any, decode: Callable[[Any], Any] | None) -> Decoding:
        generations = list(handed) if isinstance(handed, list | tuple) else [handed]
        requests = [decode(g) for g in generations] if decode is not None else None
        return cls(generations, requests)

    @property
    def busy(self) -> bool:
        """In a scheduler's hands and not done."""
        return self.requests is not None and not all(r.done for r in self.requests)

    def step(self) -> bool:
        """One forward of the first unfinished generation, alone; False when there is none (all
        finished, or a scheduler decodes them)."""
        if self.requests is not None:
            return False
        generation = next((g for g in self.generations if not g.finished), None)
        if generation is None:
            return False
        generation.step()
        return True

    def check(self) -> None:
        """Raise why a generation did not end normally (its error, a cancel)."""
        for i, g in enumerate(self.generations):
            error = self.requests[i].error if self.requests is not None else None
            if error is not None:
                raise error
            if g.finish_reason not in ("stop", "length"):
                raise RuntimeError(f"its decoding ended {g.finish_reason}")

    def abandon(self) -> None:
        """Its job is gone: a scheduler drops its generations at the next step."""
        for r in self.requests or ():
            r.abandoned = True


def advance(job: Any, decode: Callable[[Any], Any] | None) -> None:
    """One step of ``job``: a forward of the generations it handed over (decoded alone), else its
    iterator's next step, which may hand over more (to ``decode`` where given); raises as ``next``
    does (StopIteration: the job is done)."""
    decoding = job.decoding
    if decoding is not None:
        if decoding.step():
            return
        job.decoding = None
        decoding.check()
    handed = next(job.steps)
    if handed is not None:
        job.decoding = Decoding.of(handed, decode)


@dataclass
class CaptionJob:
    sid: str
    index: int
    start: float
    end: float
    tries: int = 0  # failed tries so far
    not_before: float = 0.0  # monotonic time before which a retry does not start
    steps: Iterator[Any] | None = None  # the running try; None between tries
    decoding: Decoding | None = None  # the generations its last step handed over
    text: str | None = None  # the stored caption, once done
    given_up: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return self.sid, self.index

    @property
    def busy(self) -> bool:
        return self.decoding is not None and self.decoding.busy

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

    ``run``: (job) -> an iterator whose ``next()`` is one unit of model work, yielding None or
    generations to decode before the next (``Decoding``), and whose return value (StopIteration's)
    is the stored caption. ``fatal``: exceptions that mean the stream's memory is unusable here: the
    job is dropped (the stream's own calls report that), not retried. ``decode``: where handed-over
    generations decode (an encoder scheduler's ``adopt``; None: here, one forward a step).
    """

    run: Callable[[CaptionJob], Iterator[Any]]
    fatal: tuple[type[BaseException], ...] = ()
    decode: Callable[[Any], Any] | None = None
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
            job = self.jobs.pop(k)
            if job.decoding is not None:
                job.decoding.abandon()
        self.left_out = {k for k in self.left_out if k[0] != sid}
        return len(keys)

    def pending(self, sid: str | None = None) -> int:
        return sum(1 for job in self.jobs.values() if sid is None or job.sid == sid)

    def step(self, sid: str | None = None) -> float | None:
        """One unit of work on the first due job (of ``sid`` only, if given). Returns None when no
        job is waiting, 0.0 when there may be more to do now, else the seconds until a retry is due
        (or, while a scheduler decodes the jobs' generations, until it is worth looking again).
        The caller holds the model lock."""
        now = time.monotonic()
        jobs = list(self.jobs.values())
        room = sum(j.busy for j in jobs) < JOBS_AT_ONCE
        job, wait = next_due([j for j in jobs if sid is None or j.sid == sid], now, room)
        if job is None:
            return wait
        self.counts.steps += 1
        try:
            if job.steps is None:
                job.steps = self.run(job)
            advance(job, self.decode)
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
            job.steps, job.decoding = None, None
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
