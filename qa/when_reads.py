"""What the three `when` answers share: some model reads, then the answer in one piece.

``IndexWhen`` (the content index, qa/when_index.py), ``SceneScan`` (scene by scene,
qa/scene_check.py) and ``TextWhen`` (caption candidates, qa/when_text.py) differ in what they read and
how the reads become appearances. As generations they behave the same: iterating runs the reads one
per hold of the engine's lock (other streams' answers interleave between them) with an empty delta
after each, stops between reads on a cancel, then yields the answer (``at 01:10, 05:41`` or
``never``) and gives the plan the appearances as its evidence. ``scheduled`` does the same with the
reads as generations (``reading``) decoded in an encoder scheduler's packed steps, a few at a time
beside every other running generation. Subclasses say what to read (``reads``) and what was found
(``runs``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from scenekv.units import clock
from scenekv.vlm import Generation, KVChunk

from .context import ContextPlan

READS_AT_ONCE = 8  # a scheduled answer's reads decoding at once
T = TypeVar("T")
Read = tuple[list[KVChunk], Callable[[str], Any]]  # the frames a read reads, what takes its text


class Run(Protocol):
    start: float
    end: float


def when_text(runs: Sequence[Run], limit: int = 16) -> str:
    """``at 01:10, 05:41``, or ``never``; past ``limit`` appearances the answer says how many more
    there are (``… and 94 more times``: the evidence spans hold them all)."""
    if not runs:
        return "never"
    extra = len(runs) - limit
    more = f" and {extra} more time{'s' if extra > 1 else ''}" if extra > 0 else ""
    return "at " + ", ".join(clock(r.start) for r in runs[:limit]) + more


@dataclass(kw_only=True)
class WhenReads:
    plan: ContextPlan
    lock: threading.Lock
    cancel: threading.Event | None = None
    reading: Callable[[list[KVChunk]], Generation] | None = None  # a read as a generation, not run
    text: str = ""
    token_ids: list[int] = field(default_factory=list)  # none: the answer is written, not decoded
    finish_reason: str | None = None
    ttft_s: float | None = None
    _begun: bool = field(default=False, repr=False)

    def reads(self) -> Iterator[Read]:
        """Each model read to make, in order: its frames and what takes the text the model read."""
        return iter(())

    def runs(self) -> Sequence[Run]:
        """The appearances, once every read is made."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        started = self._begin()
        for frames, take in self.reads():
            if self._cancelled():
                return
            self._read_locked(frames, take)
            yield ""  # a consumer holding its own lock per item lets others run between reads
        yield self._end(started)

    def scheduled(
        self,
        call: Callable[[Callable[[], T]], T],
        complete: Callable[[list[Generation]], None],
        at_once: int = READS_AT_ONCE,
    ) -> Iterator[str]:
        """As iterating, on an encoder's scheduler (workers/encoder_scheduler.py): the reads, ``at_once``
        at a time, built as generations (``reading``, under the lock) by ``call`` on its thread and
        decoded by ``complete`` in its packed steps with every other running generation; an empty
        delta after each read, the texts taken in order. A cancel drops the running reads at the
        next step. Without ``reading``, each read is a call."""
        started = self._begin()
        reads = self.reads()
        while batch := list(itertools.islice(reads, at_once)):
            if self._cancelled():
                return
            if self.reading is None:
                for frames, take in batch:
                    call(lambda frames=frames, take=take: self._read_locked(frames, take))
                    yield ""
                continue
            generations = call(lambda batch=batch: self._generations([f for f, _ in batch]))
            complete(generations)
            if self._cancelled():
                return
            for (_, take), g in zip(batch, generations, strict=True):
                take(g.text.strip())  # what ``read`` returns
                yield ""
        yield self._end(started)

    def _read_locked(self, frames: list[KVChunk], take: Callable[[str], Any]) -> None:
        with self.lock:
            take(self.read(frames))  # type: ignore[attr-defined]  (each subclass has its ``read``)

    def _generations(self, frames: list[list[KVChunk]]) -> list[Generation]:
        reading = self.reading
        assert reading is not None
        with self.lock:
            generations = [reading(f) for f in frames]
        for g in generations:
            g.cancel = self.cancel
        return generations

    def _begin(self) -> float:
        if self._begun:
            raise RuntimeError(f"a {type(self).__name__} can be iterated once")
        self._begun = True
        return time.perf_counter()

    def _cancelled(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            self.finish_reason = "cancelled"
            return True
        return False

    def _end(self, started: float) -> str:
        runs = self.runs()
        self.plan.evidence_spans = [(r.start, r.end) for r in runs]
        self.text = when_text(runs)
        self.ttft_s = time.perf_counter() - started
        self.finish_reason = "stop"
        return self.text
