"""`When` questions answered scene by scene: the model reads each scene, SceneTiling says when.

"When did the purple triangle appear?" asks for the start of every scene that shows it. A model can
answer it by finding the matching frames in one long context and copying their time tags, but a
small one does not learn to copy (the world model, trained so, answered `at 00:00` every time), and
even a large one may write a time that no frame has. SceneTiling already knows where every scene
starts, so the question is split instead: for each scene the model reads three of its frames, one
at a time (the KV each was prefilled with, sliced from the stored chunks), with the question in the
checkpoint's ``scene_check`` form, and says what the frame shows of the kind the question asks
about: the object (``green circle``, ``nothing``) for "When did the purple triangle appear?", the
background colour for "When was the background green?". The scene matches when the question names
what the model read in most of its frames (one frame read alone beats three read together: 35 vs
32 of 50 questions on two held-out videos, docs/benchmarks.md).
So the model is asked only what it reads well (naming what is on screen); whether two
things are the same is decided by comparing words, which a small model trained to say yes or no
did not learn (it stayed at chance: docs/benchmarks.md). The answer is the starts of the matching
scenes, each as exact as the scene cut; scenes that follow one another and both match are one
appearance. The model does the understanding; the times come from the memory, so none is invented.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from scenekv.vlm import KVChunk

from .context import ChunkRef, ContextPlan
from .when_reads import Read, WhenReads

CHECK_FRAMES = 3  # frames of a scene the model reads: spread over it, clear of its cuts
MAX_SCENES = 1024  # scenes one question checks at most; over it, retrieval's best-scoring stay


def check_indices(n: int, k: int = CHECK_FRAMES) -> list[int]:
    """Which of a scene's ``n`` frames (time order) the model reads: ``k`` spread evenly, each the
    middle of its share (10 frames: 1, 5, 8). A scene of 4-6 frames gets one next to a cut, which
    the majority outvotes; training reads the same picks, so they stay as trained."""
    if n <= k:
        return list(range(n))
    return sorted({math.floor((i + 0.5) * n / k) for i in range(k)})


@dataclass(frozen=True)
class SceneSpan:
    start: float
    end: float  # the next scene's start, or the stream's newest frame for the open scene
    refs: tuple[ChunkRef, ...]  # stored chunks holding the frames the check reads
    open: bool = False  # the stream's newest scene: its end is a frame it holds


def scene_spans(
    starts: Sequence[float],
    refs: Sequence[ChunkRef],
    *,
    end: float,
    window: tuple[float, float] | None = None,
    scores: dict[str, float] | None = None,
    max_scenes: int = MAX_SCENES,
) -> list[SceneSpan]:
    """The scenes to check, in time order: those some chunk still holds (retention may have dropped
    the rest) and, with ``window``, those overlapping it. Each names the chunks holding the points
    the check reads, so only those are loaded. Over ``max_scenes``, retrieval's best stay."""
    ordered = sorted(refs, key=lambda c: c.first_pts)
    cuts = sorted(set(starts))
    spans: list[SceneSpan] = []
    for i, s in enumerate(cuts):
        e = cuts[i + 1] if i + 1 < len(cuts) else max(end, s)
        if window is not None:
            if e <= window[0] + 1e-6 or s > window[1] + 1e-6:
                continue
            s = max(s, window[0])  # in the window from its start: "in the last 5 minutes" is asked
        last = i + 1 == len(cuts)
        hi = e + 1e-3 if last else e  # the open scene holds its newest frame
        inside = [c for c in ordered if c.last_pts >= s - 1e-6 and c.first_pts < hi - 1e-6]
        if not inside:
            continue
        spans.append(SceneSpan(s, e, check_refs(inside, s, e), last))
    if len(spans) > max_scenes:
        best = sorted(spans, key=lambda sp: -max((scores or {}).get(c.cid, 0.0) for c in sp.refs))
        keep = {id(sp) for sp in best[:max_scenes]}
        spans = [sp for sp in spans if id(sp) in keep]
    return spans


def check_refs(inside: Sequence[ChunkRef], start: float, end: float) -> tuple[ChunkRef, ...]:
    """The chunks of ``inside`` (a scene's, [start, end)) holding the ``CHECK_FRAMES`` points a check
    reads, each the middle of its share of the scene; time order, each once."""
    points = [start + (k + 0.5) * (end - start) / CHECK_FRAMES for k in range(CHECK_FRAMES)]
    chosen = {ref.cid: ref for ref in (min(inside, key=lambda c, t=t: c.gap(t)) for t in points)}
    return tuple(sorted(chosen.values(), key=lambda c: c.first_pts))


def check_frames(span: SceneSpan, loaded: dict[str, KVChunk]) -> list[KVChunk]:
    """The single-frame slices of the scene the model reads (check_indices over its loaded frames)."""
    chunks = sorted((loaded[c.cid] for c in span.refs if c.cid in loaded), key=lambda c: c.first_pts)
    pieces = [p for c in chunks for p in c.split_frames()]
    hi = span.end + 1e-6 if span.open else span.end - 1e-6
    inside = [p for p in pieces if span.start - 1e-6 <= p.first_pts < hi]
    if not inside:  # a scene shorter than a frame step: its one frame sits at the start
        inside = [p for p in pieces if abs(p.first_pts - span.start) < 1e-6]
    return [inside[i] for i in check_indices(len(inside))]


def named_in(question: str, reading: str) -> bool:
    """Whether ``question`` names what the model read in a scene, as whole words (``green circle``
    in "When did the green circle appear?"; ``red`` is not named by "… the redder one …")."""
    words = reading.strip().strip(".").split()
    if not words:
        return False
    return re.search(r"\b" + r"\s+".join(map(re.escape, words)) + r"\b", question, re.IGNORECASE) is not None


def matches(question: str, reads: Sequence[str]) -> bool:
    """A scene matches when most of its frames' reads are named in ``question``: each frame is read
    alone, so one frame misread (a shape caught mid-move) is outvoted."""
    return sum(named_in(question, r) for r in reads) * 2 > len(reads) > 0


def appearances(spans: Sequence[SceneSpan], said_yes: Sequence[bool]) -> list[SceneSpan]:
    """The scenes that start an appearance: matching scenes, each run of adjacent ones merged."""
    runs: list[SceneSpan] = []
    for sp, yes in zip(spans, said_yes, strict=True):
        if not yes:
            continue
        if runs and abs(runs[-1].end - sp.start) < 1e-6:  # the run's last scene is the one just before
            runs[-1] = SceneSpan(runs[-1].start, sp.end, runs[-1].refs + sp.refs, sp.open)
        else:
            runs.append(sp)
    return runs


@dataclass
class SceneScan(WhenReads):
    """A `when` answer read scene by scene (qa/when_reads.py: one frame a lock hold); ``readings``:
    per span, the model's reading of each of its frames."""

    spans: list[SceneSpan]
    frames: list[list[KVChunk]]  # per span, what check_frames gave
    question: str
    read: Callable[[list[KVChunk]], str]  # the model's reading of frames (here: one at a time)
    readings: list[list[str]] = field(default_factory=list)

    def reads(self) -> Iterator[Read]:
        for frames in self.frames:
            said: list[str] = []
            self.readings.append(said)
            for frame in frames:
                yield [frame], said.append

    def runs(self) -> list[SceneSpan]:
        return appearances(self.spans, [matches(self.question, r) for r in self.readings])


def scan_plan(spans: Sequence[SceneSpan], frames: Sequence[Sequence[KVChunk]]) -> ContextPlan:
    """What a scan reads: one single-frame ref per checked frame (tokens as really held)."""
    refs = [
        ChunkRef(f"{sp.refs[0].cid}@{f.first_pts:g}", f.first_pts, f.first_pts, f.tokens, 1)
        for sp, fs in zip(spans, frames, strict=True)
        for f in fs
    ]
    return ContextPlan(refs, retrieved=sorted({c.cid for sp in spans for c in sp.refs}))
