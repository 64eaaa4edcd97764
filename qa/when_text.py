"""`When` for checkpoints that read no frames (real ones): candidates found by text, checked by the model.

A real checkpoint is not trained to name what one frame shows in a fixed vocabulary, so its streams
have no frame readings; they have scene captions, written once as each scene closes, and the
caption words in the content index. "When did the truck arrive?" is then: the stream's scenes
ranked against what the question names (its question words left out) by BM25 over their captions
(and any labels read in their frames: qa/search.py's ranking, on this one stream); the best with a
score and the newest ``RECENT`` scenes with no caption yet (the open one: text cannot find what is
on screen now) are verified by the model, ``MAX_CANDIDATES`` in all, each with one short generation
on the scene's frames (``CHECK_FRAMES`` single-frame slices as the scene scan reads them, or under
M-RoPE, where frames cannot be cut out, the at most ``CHECK_FRAMES`` chunks nearest those points)
and the question put as "... Does this part of the video show it? Answer yes or no.". The answer is
the start of each scene it says yes to (adjacent ones are one appearance), as exact as the cut.

Cost: one Redis read of the stream's scene records and labels, then at most ``MAX_CANDIDATES``
generations of at most ``VERIFY_TOKENS`` tokens, whatever the stream's length (the scene-heads
context it replaces grows with the scenes up to the token budget). Its limit: what the captions
never name is not found (a caption is one sentence a scene), and an appearance in more than
``MAX_CANDIDATES`` scenes is reported in part.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from scenekv.vlm import Generation, KVChunk

from .context import ChunkRef, ContextPlan
from .scene_check import SceneSpan, appearances, check_frames, check_refs
from .search import rank, stream_docs, words
from .when_reads import Read, WhenReads

MAX_CANDIDATES = 8
RECENT = 2  # of them: the newest scenes without a caption yet
QUESTION_WORDS = frozenset(
    ["when", "did", "does", "do", "was", "were", "what", "time", "appear", "appears", "appeared", "first"]
    + ["last", "happen", "happened", "see", "seen", "show", "shown", "there", "video"]
)
VERIFY_TOKENS = 3
VERIFY = "{question} Does this part of the video show it? Answer yes or no."


def said_yes(text: str) -> bool:
    return re.match(r"\s*yes\b", text, re.IGNORECASE) is not None


@dataclass
class TextWhen(WhenReads):
    """The verification reads of the candidates, one a lock hold (qa/when_reads.py)."""

    question: str
    spans: list[SceneSpan]  # the candidates, time order
    frames: list[list[KVChunk]]  # what each is read on
    read: Callable[[list[KVChunk]], str]
    answers: list[str] = field(default_factory=list)  # the model's, one a candidate

    def reads(self) -> Iterator[Read]:
        for frames in self.frames:
            yield frames, self.answers.append

    def runs(self) -> list[SceneSpan]:
        return appearances(self.spans, [said_yes(a) for a in self.answers])


def query_words(question: str) -> list[str]:
    """What a `when` question names, without its question words ("When did the truck arrive?" ->
    truck, arrive): "appear" in a caption says nothing about the truck."""
    return [w for w in words(question) if w not in QUESTION_WORDS]


def candidate_spans(
    memory, question: str, refs: Sequence[ChunkRef], *, end: float, window: tuple[float, float] | None
) -> list[SceneSpan]:
    """The scenes to verify, time order: the newest ``RECENT`` with no caption yet (the open scene,
    scenes still waiting for theirs: text cannot rank them, and they are what a live "when" is
    most often about) and, up to ``MAX_CANDIDATES``, those whose captions (and read labels) best
    match ``question``. Each holds at most ``CHECK_FRAMES`` stored chunks, those nearest the points
    the scene scan reads. ``memory``: a qa.memory_view.MemoryView (its ``store`` and ``sid``)."""
    named = query_words(question)
    docs = sorted(stream_docs(memory.store, memory.sid, set(named)), key=lambda d: d.start)
    if window is not None:
        docs = [
            d for d in docs if (d.end is None or d.end > window[0] + 1e-6) and d.start <= window[1] + 1e-6
        ]
    starts = [d.start for d in docs]
    recent = [i for i in range(len(docs) - 1, -1, -1) if not docs[i].caption][:RECENT]
    best = rank(docs, " ".join(named), limit=MAX_CANDIDATES - len(recent)) if named else []
    chosen = sorted(({bisect.bisect_right(starts, h.start) - 1 for h in best} | set(recent)) - {-1})
    ordered = sorted(refs, key=lambda c: c.first_pts)
    lasts = [c.last_pts for c in ordered]  # chunks do not overlap: in time order too
    spans = []
    for i in chosen:
        doc = docs[i]
        is_open = doc.end is None
        start, stop = doc.start, doc.end if doc.end is not None else max(end, doc.start)
        if window is not None:
            start, stop = max(start, window[0]), min(stop, window[1] + (1e-3 if is_open else 0.0))
        inside = []
        for c in ordered[bisect.bisect_left(lasts, start - 1e-6) :]:
            if c.first_pts > stop + 1e-6 or (not is_open and c.first_pts >= stop - 1e-6):
                break
            inside.append(c)
        if inside:
            spans.append(SceneSpan(start, stop, check_refs(inside, start, stop), is_open))
    return spans


def text_when(
    memory,
    question: str,
    refs: Sequence[ChunkRef],
    window: tuple[float, float] | None,
    end: float,
    read: Callable[[list[KVChunk]], str],
    lock: threading.Lock,
    cancel: threading.Event | None = None,
    reading: Callable[[list[KVChunk]], Generation] | None = None,
) -> TextWhen | None:
    """The verification of ``question``'s candidates; None when the stream has no captions to match
    (the scene-heads context answers then). ``read``: the model's short answer to the verify prompt
    on some frames (``reading``: the same as a generation not run yet, for a scheduler to decode)."""
    if not hasattr(memory, "store") or not refs:
        return None
    if not memory.store.caption_entries(memory.sid):
        return None  # nothing captioned yet: no text to find candidates in
    spans = candidate_spans(memory, question, refs, end=end, window=window)
    loaded = memory.load(sorted({c.cid for sp in spans for c in sp.refs}))
    cuttable = all(c.cuttable for c in loaded.values())
    frames = [
        check_frames(sp, loaded) if cuttable else [loaded[c.cid] for c in sp.refs if c.cid in loaded]
        for sp in spans
    ]
    plan = ContextPlan(
        [ChunkRef(f"{f.first_pts:g}", f.first_pts, f.last_pts, f.tokens, 1) for fs in frames for f in fs],
        retrieved=sorted({c.cid for sp in spans for c in sp.refs}),
    )
    return TextWhen(question, spans, frames, read, plan=plan, lock=lock, cancel=cancel, reading=reading)
