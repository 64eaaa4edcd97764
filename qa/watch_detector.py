"""What a watch's text matches, and its appearances found online, frame by frame as frames are read.

A watch ("red square", "purple background", "truck") is matched against each read frame
(memory/content_index.py's readings: what object, what background) or, for a checkpoint that reads
no frames, against each scene's caption. A frame matches when every word the watch names occurs in
the reading of its kind: "square" matches a read ``red square``, "red square" does not match
``red circle``; "… background" asks about backgrounds.

`when` (qa/appearances.py) sees the whole stretch before it answers, so it can outvote misreads on
both sides of a frame. A watch must speak as soon as it can, so ``WatchDetector`` decides from what
came before only, as PySceneDetect's detectors take ``process_frame`` one frame at a time: an
appearance starts when ``confirm`` read frames in a row match (the hit names the first of them, so a
single misread frame never makes a hit, and the latency is ``confirm - 1`` frames after onset); it
ends at the first frame of ``end_after`` in a row that do not (so one or two misread frames inside
an appearance do not split it), and that end is told in a second hit. An appearance starting
within ``cooldown_s`` of the previous one's end is not told (nor is its end): its changes come out
``quiet``, to be kept where a restarted encoder finds them, not told. Plain Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scenekv.memory.content_index import OBJECT, STOPWORDS, Reading

from .when_index import asked_kind

# words that say how to watch, not what for ("the background", "appears")
NOT_TERMS = STOPWORDS | {"background", "appear", "appears", "appeared", "show", "shows", "when", "any"}


def watch_terms(text: str) -> list[str]:
    """The words a watch names: ``"a red square"`` -> ``["red", "square"]``; [] names nothing."""
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in NOT_TERMS]


def _words(value: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", value.lower()))


@dataclass(frozen=True)
class WatchMatcher:
    """What one watch's text matches: its kind (object or background) and its words."""

    kind: str
    terms: frozenset[str]

    @classmethod
    def of(cls, text: str) -> WatchMatcher:
        return cls(asked_kind(text), frozenset(watch_terms(text)))

    def reading(self, reading: Reading) -> bool:
        value = reading.object if self.kind == OBJECT else reading.background
        return bool(self.terms) and bool(value) and self.terms <= _words(value)

    def caption(self, caption: str) -> bool:
        return bool(self.terms) and self.terms <= _words(caption)


@dataclass(frozen=True)
class WatchParams:
    confirm: int = 2  # matching read frames in a row that start an appearance
    end_after: int = 3  # non-matching read frames in a row that end one


@dataclass(frozen=True)
class Started:
    start: float  # the first of the confirming frames
    evidence: tuple[float, float]  # those frames' span
    quiet: bool = False  # inside the cooldown: to be kept (a restart must know of it), not told


@dataclass(frozen=True)
class Ended:
    start: float
    end: float  # the first frame that did not match
    evidence: tuple[float, float]  # first to last matching frame
    quiet: bool = False


Change = Started | Ended


@dataclass
class WatchDetector:
    """One watch on one stream, fed its read frames in time order (``process``). ``open_start``: an
    appearance already told and not ended; ``last_end``: the previous one's end (for the cooldown):
    both restore a detector after a restart from the stored hits."""

    params: WatchParams = field(default_factory=WatchParams)
    cooldown_s: float = 0.0
    open_start: float | None = None
    last_end: float | None = None
    silent: bool = False  # the open appearance is inside the cooldown: neither start nor end is told
    last_pts: float | None = None
    _run_start: float | None = None
    _run: int = 0
    _last_match: float | None = None
    _misses: int = 0
    _first_miss: float | None = None

    def process(self, pts: float, matched: bool) -> list[Change]:
        """The changes frame ``pts`` makes; a frame not after the last one is ignored (read again)."""
        if self.last_pts is not None and pts <= self.last_pts + 1e-9:
            return []
        self.last_pts = pts
        if self.open_start is not None:
            return self._while_open(pts, matched)
        if not matched:
            self._run, self._run_start = 0, None
            return []
        if self._run == 0:
            self._run_start = pts
        self._run += 1
        self._last_match = pts
        if self._run < self.params.confirm:
            return []
        start = self._run_start if self._run_start is not None else pts
        self.open_start, self._run, self._misses = start, 0, 0
        self.silent = self.last_end is not None and start - self.last_end < self.cooldown_s
        return [Started(start, (start, pts), self.silent)]

    def _while_open(self, pts: float, matched: bool) -> list[Change]:
        if matched:
            self._last_match, self._misses, self._first_miss = pts, 0, None
            return []
        self._misses += 1
        if self._first_miss is None:
            self._first_miss = pts
        if self._misses < self.params.end_after:
            return []
        start, end = self.open_start, self._first_miss
        assert start is not None
        last = self._last_match if self._last_match is not None else start
        quiet = self.silent
        self.open_start, self.last_end, self.silent = None, end, False
        self._misses, self._first_miss, self._last_match = 0, None, None
        return [Ended(start, end, (start, last), quiet)]

    def finish(self, step: float) -> list[Change]:
        """The stream ended: an appearance still open ends one frame step after its last match."""
        if self.open_start is None:
            return []
        start = self.open_start
        last = self._last_match if self._last_match is not None else start
        quiet = self.silent
        self.open_start, self.last_end, self.silent = None, last + step, False
        self._misses, self._first_miss, self._last_match = 0, None, None
        return [Ended(start, last + step, (start, last), quiet)]
