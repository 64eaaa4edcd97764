"""Search across streams: which scenes, of every stream the server knows, show what a text describes.

Served from what ingest already wrote (scene captions and the content index), never a model pass: a
search costs one label lookup per stream plus reads of the labels that share a word with the query,
and one read of each stream's scene records. Bounded: at most ``MAX_STREAMS`` streams (the registry's
first, by id) and ``MAX_HITS`` hits.

Ranking is BM25 with scenes as documents, over all searched streams at once (so scores compare
across streams). A scene's words are its caption's plus those of the labels read in its frames; a
label counts once per scene however many frames showed it (its duration says nothing about the
query). Captions alone would miss what frames showed and captions left out; labels alone would miss
real checkpoints' captions. Then a label whose words occur in the query as a phrase (in order,
stopwords aside) adds their idf once more, so "blue circle" ranks a read ``obj:blue_circle`` above
``obj:red_circle`` on a ``bg:blue`` scene, which share the same words, and "yellow square on orange"
ranks ``obj:yellow_square`` on ``bg:orange`` above ``obj:orange_square`` on ``bg:yellow``; read in
one frame only (perhaps a misread) it adds half. A hit starts where the best-matching label was
first read inside the scene (frame precision), else at the scene's start.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from scenekv.errors import UserError
from scenekv.memory.content_index import STOPWORDS, WORD, label_words

MAX_STREAMS = 64
MAX_HITS = 100
MAX_LABELS_PER_STREAM = 64  # labels sharing a word with the query that are looked up, per stream
K1, B = 1.2, 0.75


@dataclass(frozen=True)
class SceneDoc:
    """One scene as search sees it: ``labels`` maps each label read inside it to its first time,
    ``frames`` to how many read frames showed it (absent: one)."""

    stream_id: str
    start: float
    end: float | None
    caption: str
    labels: dict[str, float] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    stream_id: str
    start: float
    end: float | None
    caption: str
    score: float

    def as_dict(self) -> dict:
        return {"stream_id": self.stream_id, "start": self.start, "end": self.end, "caption": self.caption}


def words(text: str) -> list[str]:
    """Lower-case words without stopwords, a plural's ``s`` dropped (``circles`` finds ``circle``)."""
    out = []
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        if w in STOPWORDS:
            continue
        out.append(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def rank(docs: Sequence[SceneDoc], query: str, limit: int = 10) -> list[SearchHit]:
    """The ``limit`` best scenes for ``query`` (score > 0), best first; pure."""
    sequence = words(query)
    terms = set(sequence)
    if not terms or not docs:
        return []
    bags = [_bag(d) for d in docs]
    lengths = [sum(b.values()) for b in bags]
    avg = (sum(lengths) / len(lengths)) or 1.0
    df = Counter(t for b in bags for t in terms if b[t])
    idf = {t: math.log(1 + (len(docs) - df[t] + 0.5) / (df[t] + 0.5)) for t in terms}
    hits = []
    for doc, bag, n in zip(docs, bags, lengths, strict=True):
        norm = K1 * (1 - B + B * n / avg)
        score = sum(idf[t] * bag[t] * (K1 + 1) / (bag[t] + norm) for t in terms if bag[t])
        best, best_bonus = None, 0.0
        for label, at in doc.labels.items():
            lw = words(label_words(label))
            bonus = sum(idf[t] for t in set(lw)) if len(lw) > 1 and _phrase_in(lw, sequence) else 0.0
            bonus *= min(doc.frames.get(label, 1), 2) / 2  # one frame's read may be a misread
            if bonus > best_bonus or (bonus == best_bonus and bonus > 0 and best is not None and at < best):
                best, best_bonus = at, bonus
        score += best_bonus
        if score <= 0:
            continue
        if best is None:  # no whole label: the first time any label sharing a word was read
            shared = [at for label, at in doc.labels.items() if set(words(label_words(label))) & terms]
            best = min(shared) if shared else doc.start
        hits.append(SearchHit(doc.stream_id, best, doc.end, doc.caption, round(score, 6)))
    hits.sort(key=lambda h: (-h.score, h.stream_id, h.start))
    return hits[: max(0, min(limit, MAX_HITS))]


def _phrase_in(phrase: list[str], sequence: list[str]) -> bool:
    """Whether ``phrase`` occurs in ``sequence`` as consecutive words (stopwords already left out)."""
    n = len(phrase)
    return any(sequence[i : i + n] == phrase for i in range(len(sequence) - n + 1))


def _bag(doc: SceneDoc) -> Counter:
    bag = Counter(words(doc.caption))
    for label in doc.labels:  # once per scene: counted as present, not per frame
        for w in set(words(label_words(label))) - set(bag):
            bag[w] = 1
    return bag


def search(store, text: str, streams: Sequence[str] | None = None, limit: int = 10) -> list[SearchHit]:
    """Rank the scenes of ``streams`` (default: every stream in the store) for ``text``.

    ``store`` is a memory.MemoryStore. Unknown streams named in ``streams`` raise ``stream_not_found``.
    """
    if streams is None:
        sids = store.list_streams()[:MAX_STREAMS]
    else:
        sids = list(dict.fromkeys(streams))
        if len(sids) > MAX_STREAMS:
            raise UserError(f"search at most {MAX_STREAMS} streams at once", code="bad_request")
        missing = [s for s in sids if not store.exists(s)]
        if missing:
            raise UserError(f"no stream {missing[0]!r}", code="unknown_stream")
    terms = set(words(text))
    if not terms:
        return []
    docs: list[SceneDoc] = []
    for sid in sids:
        docs.extend(stream_docs(store, sid, terms))
    return rank(docs, text, limit)


def stream_docs(store, sid: str, terms: set[str]) -> list[SceneDoc]:
    """The scenes of ``sid`` with the labels sharing a word with ``terms`` placed inside them."""
    scenes = store.scenes(sid)
    if not scenes:
        return []
    wanted = [
        label
        for label in sorted(store.index_labels(sid))
        if not label.startswith(f"{WORD}:") and set(words(label_words(label))) & terms
    ][:MAX_LABELS_PER_STREAM]
    starts = [s.start for s in scenes]
    found: list[dict[str, float]] = [{} for _ in scenes]
    frames: list[Counter] = [Counter() for _ in scenes]
    for label in wanted:
        for t in store.index_times(sid, label):
            i = bisect.bisect_right(starts, t) - 1
            if i < 0 or (scenes[i].end is not None and t > scenes[i].end and i + 1 < len(scenes)):
                continue
            frames[i][label] += 1
            if label not in found[i] or t < found[i][label]:
                found[i][label] = t
    return [
        SceneDoc(sid, s.start, s.end, s.caption, f, dict(n))
        for s, f, n in zip(scenes, found, frames, strict=True)
    ]
