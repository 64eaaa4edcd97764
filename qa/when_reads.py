"""What the three `when` answers share: some model reads, then the answer in one piece.

``IndexWhen`` (the content index, qa/when_index.py), ``SceneScan`` (scene by scene,
qa/scene_check.py) and ``TextWhen`` (caption candidates, qa/when_text.py) differ in what they read and
how the reads become appearances. As generations they behave the same: iterating runs the reads one
per hold of the engine's lock (other streams' answers interleave between them) with an empty delta
after each, stops between reads on a cancel, then yields the answer (``at 01:10, 05:41`` or
``never``) and gives the plan the appearances as its evidence. Subclasses say what to read
(``reads``) and what was found (``runs``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from scenekv.units import clock

from .context import ContextPlan


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
    text: str = ""
    token_ids: list[int] = field(default_factory=list)  # none: the answer is written, not decoded
    finish_reason: str | None = None
    ttft_s: float | None = None
    _begun: bool = field(default=False, repr=False)

    def reads(self) -> Iterator[Callable[[], None]]:
        """Each model read to make, in order (one lock hold each)."""
        return iter(())

    def runs(self) -> Sequence[Run]:
        """The appearances, once every read is made."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        if self._begun:
            raise RuntimeError(f"a {type(self).__name__} can be iterated once")
        self._begun = True
        started = time.perf_counter()
        for read in self.reads():
            if self.cancel is not None and self.cancel.is_set():
                self.finish_reason = "cancelled"
                return
            with self.lock:
                read()
            yield ""  # a consumer holding its own lock per item lets others run between reads
        runs = self.runs()
        self.plan.evidence_spans = [(r.start, r.end) for r in runs]
        self.text = when_text(runs)
        self.ttft_s = time.perf_counter() - started
        self.finish_reason = "stop"
        yield self.text
