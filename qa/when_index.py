"""`When` answered from the content index: label lookups, not a scan of every scene.

Each stored frame was read once by the model when it arrived (workers/reading_jobs.py): what object
and what background it shows (memory/content_index.py). "When did the purple triangle appear?" is
then: the labels the question names (``obj:purple_triangle``), the read frames showing them in the
asked window (one lookup, with their ranks among all read frames), the readings of the stretches
around those frames (``CONTEXT`` read frames each side), smoothed into appearances
(qa/appearances.py). Onsets are frames, not scene cuts: an object that appears mid-scene (a cut
SceneTiling missed) is found at its first frame. What is read costs as much as the thing is on screen
(plus context), not as much as the stream.

Frames newer than the index (a live stream's last few, not read yet) are read here, one per lock
hold as the scene scan does, up to ``MAX_TAIL``; a stream further behind (one recorded before the
index existed) is answered by the scan (scene_check.py) while its readings are made. So a question
costs at most ``MAX_TAIL`` model reads whatever the stream's length, and none when the index is
current.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from scenekv.memory.content_index import BACKGROUND, OBJECT, Hit, Reading, label_of, label_words
from scenekv.vlm import Generation, KVChunk

from .appearances import Appearance, appearances
from .context import ChunkRef, ContextPlan
from .scene_check import named_in
from .when_reads import Read, WhenReads

MAX_TAIL = 64  # frames newer than the index a question reads itself; more: the scene scan answers
CONTEXT = 8  # read frames around the frames showing the thing that its smoothing sees
EDGE_FRAMES = 4  # frame steps looked up beyond a window's edges, so a run across an edge is whole

# The canonical `when` question of each kind: the world model names the frame's object / background
# whatever colour and shape it names (measured: the same reading for 5 objects and 4 colours asked,
# docs/benchmarks.md), so one reading a kind serves every question of that kind.
CANONICAL = {OBJECT: "When did the red circle appear?", BACKGROUND: "When was the background red?"}


def asked_kind(question: str) -> str:
    """What a `when` question asks about: the background ("When was the background green?") or the
    object, as the world model's two `when` forms do."""
    return BACKGROUND if re.search(r"\bbackground\b", question, re.IGNORECASE) else OBJECT


def named_labels(question: str, labels: Iterable[str]) -> list[str]:
    """The stream's labels of the asked kind that the question names as whole words."""
    kind = asked_kind(question)
    return sorted(x for x in labels if x.startswith(kind + ":") and named_in(question, label_words(x)))


def stretches(hits: Sequence[Hit], entries: int, *, newest: bool = False) -> list[tuple[int, int]]:
    """Rank ranges (inclusive) of the read frames to smooth: ``CONTEXT`` each side of every hit,
    overlapping ones merged; with ``newest``, also the index's last ``CONTEXT`` (frames read after it
    join that stretch)."""
    wanted = [(max(0, h.rank - CONTEXT), min(entries - 1, h.rank + CONTEXT)) for h in hits]
    if newest and entries:
        wanted.append((max(0, entries - 1 - CONTEXT), entries - 1))
    out: list[list[int]] = []
    for lo, hi in sorted(wanted):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


@dataclass
class IndexWhen(WhenReads):
    """A `when` answer from the index (qa/when_reads.py): the reads are the frames newer than the
    index, one a lock hold. ``readings``: the stretches of the index to smooth, time order;
    ``shown``: the asked kind's values the question names (``purple triangle``)."""

    question: str
    readings: list[list[Reading]]
    shown: set[str]
    tail: list[KVChunk]  # single frames after the index's newest, time order
    read: Callable[[list[KVChunk]], str]
    step: float
    window: tuple[float, float] | None
    tail_reads: list[str] = field(default_factory=list)  # of the tail frames

    def reads(self) -> Iterator[Read]:
        for frame in self.tail:
            yield [frame], self.tail_reads.append

    def runs(self) -> list[Appearance]:
        kind = asked_kind(self.question)
        return appearances(self._stretches(kind), self._shown(kind), kind, step=self.step, window=self.window)

    def _tail_readings(self, kind: str) -> list[Reading]:
        values = [label_words(label_of(kind, text)) for text in self.tail_reads]
        if kind == OBJECT:
            return [Reading(f.first_pts, v, "") for f, v in zip(self.tail, values, strict=True)]
        return [Reading(f.first_pts, "", v) for f, v in zip(self.tail, values, strict=True)]

    def _stretches(self, kind: str) -> list[list[Reading]]:
        """The index's stretches, the last one continued by the tail's readings."""
        if not self.tail:
            return self.readings
        head = self.readings[:-1] if self.readings else []
        return [*head, [*(self.readings[-1] if self.readings else []), *self._tail_readings(kind)]]

    def _shown(self, kind: str) -> set[str]:
        tail = {label_words(label_of(kind, text)) for text in self.tail_reads}
        return self.shown | {v for v in tail if v and named_in(self.question, v)}


def index_when(
    memory,
    question: str,
    refs: Sequence[ChunkRef],
    window: tuple[float, float] | None,
    end: float,
    read: Callable[[list[KVChunk]], str],
    lock: threading.Lock,
    cancel: threading.Event | None = None,
    reading: Callable[[list[KVChunk]], Generation] | None = None,
) -> IndexWhen | None:
    """The lookup for ``question`` on ``memory`` (a qa.memory_view.MemoryView: its index methods and
    chunk loads), or None when the stream has no index or more than ``MAX_TAIL`` frames newer than it
    in the window. ``read``: the model's reading of one frame with the asked kind's canonical question
    (``reading``: the same as a generation not run yet, for a scheduler to decode)."""
    if not hasattr(memory, "label_hits") or (through := memory.read_through()) is None:
        return None
    lo, hi = window if window is not None else (float("-inf"), end)
    newer = [r for r in refs if r.last_pts > through + 1e-6 and r.first_pts <= hi + 1e-6]
    if sum(max(1, r.frames) for r in newer) > MAX_TAIL:
        return None
    loaded = memory.load([r.cid for r in newer])
    if not all(c.cuttable for c in loaded.values()):
        return None  # M-RoPE: frames cannot be cut out of their chunks
    frames = (f for c in loaded.values() for f in c.split_frames())
    tail = sorted((f for f in frames if through + 1e-6 < f.first_pts <= hi + 1e-6), key=lambda f: f.first_pts)
    step = memory.frame_step()
    edge = EDGE_FRAMES * step
    labels = named_labels(question, memory.index_labels())
    found = memory.label_hits(labels, lo - edge, hi + edge)
    ranges = stretches(found.hits, found.entries, newest=bool(tail))
    plan = ContextPlan(
        [ChunkRef(f"{f.first_pts:g}", f.first_pts, f.first_pts, f.tokens, 1) for f in tail],
        retrieved=[r.cid for r in newer],
    )
    shown = {label_words(x) for x in labels}
    readings = memory.readings_by_rank(ranges) if ranges else []
    return IndexWhen(
        question,
        readings,
        shown,
        tail,
        read,
        step,
        window,
        plan=plan,
        lock=lock,
        cancel=cancel,
        reading=reading,
    )
