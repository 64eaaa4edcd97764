"""The content index: what the model read in each stored frame, written once, looked up by label.

A `when` question used to re-read frames of every scene; the reads are the same for every question of
a kind (what object, what background a frame shows), so they are made once, as frames arrive
(workers/reading_jobs.py), and kept here with the stream. One entry per read frame, holding its
labels (``obj:green_circle``, ``bg:yellow``); each label has a sorted set of the times it was read,
so "where was L read between a and b" and "which labels does this stream have" are lookups whose cost
follows the answer, not the stream. For checkpoints without frame readings the scene captions' words
are indexed the same way (``word:circle``, at the scene's start), for search.

Writes are single Lua steps (scripts.py): a frame read again replaces its entry, never adds one.
The entries carry their own pts, not chunk ids, so compaction (which drops chunks, keeps scenes) leaves
them alone; retention trims them only where it dropped whole scenes (``trim_index``). Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .records import text
from .redis_conn import StoreBase

OBJECT, BACKGROUND, WORD = "obj", "bg", "word"  # label kinds: what a frame shows; a caption's words
MAX_LABEL_WORDS = 6
STOPWORDS = frozenset(
    ["a", "an", "and", "are", "at", "by", "for", "from", "in", "into", "is", "it", "its", "of", "on", "or"]
    + ["the", "this", "to", "with"]
)


def label_of(kind: str, reading: str) -> str:
    """``obj:green_circle`` for the object reading "Green circle."; "" when nothing is left."""
    words = re.findall(r"[a-z0-9]+", reading.lower())[:MAX_LABEL_WORDS]
    return f"{kind}:{'_'.join(words)}" if words else ""


def label_words(label: str) -> str:
    """The words a label stands for: ``obj:green_circle`` -> ``green circle``."""
    return label.partition(":")[2].replace("_", " ")


@dataclass(frozen=True)
class Reading:
    """What the model read in one frame: its object (``green circle`` / ``nothing``) and background."""

    pts: float
    object: str
    background: str

    @property
    def labels(self) -> list[str]:
        return [x for x in (label_of(OBJECT, self.object), label_of(BACKGROUND, self.background)) if x]


@dataclass(frozen=True)
class Hit:
    """One read frame that shows a label: ``rank`` counts the read frames before it, so two hits are
    consecutive frames when their ranks differ by one; ``next_pts`` is the next read frame (None: the
    newest)."""

    pts: float
    rank: int
    next_pts: float | None


@dataclass(frozen=True)
class Hits:
    entries: int  # read frames in the whole index
    hits: list[Hit]  # time order


@dataclass(frozen=True)
class IndexUsage:
    readings: int  # frames read
    caption_entries: int  # scenes whose caption words are indexed
    labels: int
    bytes: int  # Redis's own MEMORY USAGE of every index key

    def as_dict(self) -> dict:
        return {
            "readings": self.readings,
            "caption_entries": self.caption_entries,
            "labels": self.labels,
            "bytes": self.bytes,
        }


class ContentIndex(StoreBase):
    def put_reading(self, sid: str, reading: Reading) -> bool:
        """Store a frame's reading (replacing an earlier one of the same frame); False if unchanged."""
        k = self.keys(sid)
        return self._put(sid, k.readings, reading.pts, reading.labels)

    def put_caption_words(self, sid: str, start: float, caption: str) -> bool:
        """Index the words of the caption of the scene starting at ``start`` (stopwords left out)."""
        words = [w for w in re.findall(r"[a-z0-9]+", caption.lower()) if w not in STOPWORDS]
        labels = list(dict.fromkeys(f"{WORD}:{w}" for w in words))
        return self._put(sid, self.keys(sid).caption_words, start, labels)

    def _put(self, sid: str, entries: str, pts: float, labels: Sequence[str]) -> bool:
        k = self.keys(sid)
        at = repr(float(pts))
        member = "|".join([at, *labels])
        args = [k.label_base, at, member, self._ttl_ms, *labels]
        return bool(self._run("INDEX_PUT", [entries, k.labels, k.stream], args))

    def readings(self, sid: str, start: float | None = None, end: float | None = None) -> list[Reading]:
        """The frames read in [start, end], time order."""
        lo = "-inf" if start is None else repr(float(start))
        hi = "+inf" if end is None else repr(float(end))
        return [_reading(text(m)) for m in self.client.zrangebyscore(self.keys(sid).readings, lo, hi)]

    def recent_readings(self, sid: str, before: float, after: float | None, count: int) -> list[Reading]:
        """The last ``count`` frames read before ``before`` (exclusive) and after ``after`` (exclusive;
        None: any), time order: one bounded read however long the stream."""
        lo = "-inf" if after is None else f"({float(after)!r}"
        raw = self.client.zrevrangebyscore(
            self.keys(sid).readings, f"({float(before)!r}", lo, start=0, num=count
        )
        return [_reading(text(m)) for m in reversed(raw)]

    def caption_entries(self, sid: str) -> int:
        """Scenes whose caption words are indexed."""
        return int(self.client.zcard(self.keys(sid).caption_words))

    def read_through(self, sid: str) -> float | None:
        """pts of the newest frame read: frames are read in order, so every stored one before it is."""
        newest = self.client.zrange(self.keys(sid).readings, -1, -1, withscores=True)
        return float(newest[0][1]) if newest else None

    def index_labels(self, sid: str) -> dict[str, int]:
        """Every label the stream's index holds, with how many entries show it."""
        return {text(a): int(b) for a, b in self.client.hgetall(self.keys(sid).labels).items()}

    def index_times(
        self, sid: str, label: str, start: float | None = None, end: float | None = None
    ) -> list[float]:
        """Where ``label`` was read (frame pts, or scene starts for caption words) in [start, end]."""
        lo = "-inf" if start is None else repr(float(start))
        hi = "+inf" if end is None else repr(float(end))
        return [float(t) for t in self.client.zrangebyscore(self.keys(sid).label(label), lo, hi)]

    def label_hits(self, sid: str, labels: Iterable[str], start: float, end: float) -> Hits:
        """The read frames showing any of ``labels`` in [start, end], with their ranks (one round trip)."""
        k = self.keys(sid)
        raw = self._run(
            "INDEX_HITS", [k.readings, *(k.label(x) for x in labels)], [repr(float(start)), repr(float(end))]
        )
        hits = [
            Hit(float(text(raw[i])), int(raw[i + 1]), float(text(raw[i + 2])) if raw[i + 2] else None)
            for i in range(1, len(raw), 3)
        ]
        return Hits(int(raw[0]), sorted(hits, key=lambda h: h.pts))

    def readings_by_rank(self, sid: str, ranges: Sequence[tuple[int, int]]) -> list[list[Reading]]:
        """The readings of each (first, last) rank range (inclusive, time order), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for first, last in ranges:
            pipe.zrange(self.keys(sid).readings, first, last)
        return [[_reading(text(m)) for m in got] for got in pipe.execute()]

    def trim_index(self, sid: str, before: float) -> int:
        """Drop entries (readings and caption words) before ``before``; how many went."""
        k = self.keys(sid)
        bound = f"({float(before)!r}"
        return sum(
            int(self._run("INDEX_TRIM", [entries, k.labels], [k.label_base, bound]))
            for entries in (k.readings, k.caption_words)
        )

    def index_usage(self, sid: str) -> IndexUsage:
        """Entries, labels and what Redis spends on them (`scenekv memory info`)."""
        k = self.keys(sid)
        labels = list(self.index_labels(sid))
        keys = [k.readings, k.caption_words, k.labels, *(k.label(x) for x in labels)]
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(k.readings).zcard(k.caption_words)
        for key in keys:
            pipe.memory_usage(key)
        readings, captions, *sizes = pipe.execute()
        return IndexUsage(readings, captions, len(labels), sum(int(s or 0) for s in sizes))


def _reading(member: str) -> Reading:
    pts, *labels = member.split("|")
    found = {label.partition(":")[0]: label_words(label) for label in labels}
    return Reading(float(pts), found.get(OBJECT, ""), found.get(BACKGROUND, ""))
