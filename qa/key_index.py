"""What retrieval knows about a stream's stored chunks, kept between questions and extended.

Scoring a question needs every stored chunk's metadata and retrieval keys. Reading them all per
question made its cost grow with the stream (a day at 1 fps: ~130 MB a question). A ``KeyIndex`` keeps
them in memory per stream and, per question, reads the ids of chunks newer than the newest it knows
and the chunk count (one round trip), then the metadata and keys of just those chunks. When the
count says chunks were dropped meanwhile (retention), the ids are read once in full to forget them
(a few bytes a chunk, never their keys again). A stream deleted and created again under the same id
(a new ``created_at``) starts a new index. Keys are kept in float16: scores only rank chunks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from scenekv.memory import ChunkMeta, MemoryStore

from .retrieval import cosine_scores, unit_keys


@dataclass
class StreamIndex:
    generation: bytes | None
    metas: dict[str, ChunkMeta] = field(default_factory=dict)
    keys: dict[str, torch.Tensor] = field(default_factory=dict)  # cid -> mean keys, float16
    # every key unit-normalised per (layer, head) and stacked [N, L, H, D], rows in ``order``: a
    # question scores the whole stream with one product instead of stacking N tensors each time
    order: list[str] = field(default_factory=list)
    matrix: torch.Tensor | None = None

    def restack(self) -> None:
        self.order = sorted(self.keys, key=lambda c: self.metas[c].first_pts if c in self.metas else 0.0)
        if not self.order:
            self.matrix = None
            return
        self.matrix = unit_keys([self.keys[c] for c in self.order]).to(torch.float16)


@dataclass(frozen=True)
class IndexSnapshot:
    """What one question sees of the index: metadata oldest first, and the scorer over its keys."""

    metas: list[ChunkMeta]
    order: list[str]
    matrix: torch.Tensor | None

    def scores(self, queries: torch.Tensor) -> dict[str, float]:
        """qa/retrieval.py's score of ``queries`` [L, H, D] against every indexed chunk."""
        if self.matrix is None:
            return {}
        return dict(zip(self.order, cosine_scores(self.matrix, queries).tolist(), strict=True))


class KeyIndex:
    """Per-stream chunk metadata and retrieval keys, for the ``streams`` most recently asked about."""

    def __init__(self, streams: int = 256) -> None:
        self.streams = streams
        self._by_stream: OrderedDict[tuple[str, str], StreamIndex] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = {"refreshes": 0, "metas_read": 0, "keys_read": 0, "resyncs": 0}

    def listing(self, store: MemoryStore, sid: str) -> tuple[float | None, list[str], int, bytes | None]:
        """The cheap, consistent part of a refresh (one round trip: ids newer than the index knows,
        the count, the generation), for a caller that must read it while holding its stream's lock;
        ``refresh`` then reads the rest outside it."""
        with self._lock:
            index = self._by_stream.get((store.prefix, sid))
            newest = max((m.first_pts for m in index.metas.values()), default=None) if index else None
        return (newest, *store.chunks_after(sid, newest))

    def refresh(self, store: MemoryStore, sid: str, listing: tuple | None = None) -> IndexSnapshot:
        """The stream's chunk metadata (oldest first) and retrieval scorer, brought up to date with
        Redis (reading only what changed); a snapshot the caller may keep."""
        key = (store.prefix, sid)
        newest, cids, count, generation = listing if listing is not None else self.listing(store, sid)
        with self._lock:
            index = self._by_stream.get(key)
            if index is None or index.generation != generation:
                if newest is not None:  # another stream under the same id: start over, from the first
                    cids, count, generation = store.chunks_after(sid, None)
                index = StreamIndex(generation)
            self._by_stream[key] = index
            self._by_stream.move_to_end(key)
            while len(self._by_stream) > self.streams:
                self._by_stream.popitem(last=False)
            new = [c for c in cids if c not in index.metas]
            known = len(index.metas) + len(new)
        if count < known:  # some were dropped since: one full id read to forget them
            present = set(store.chunks_after(sid, None)[0])
            with self._lock:
                for gone in [c for c in index.metas if c not in present]:
                    index.metas.pop(gone, None)
                    index.keys.pop(gone, None)
                index.matrix = None  # rows moved: stacked again below
                self.stats["resyncs"] += 1
        if new:
            metas = store.chunk_metas(sid, new)
            keys = store.load_keys(sid, list(metas))
            with self._lock:
                index.metas.update(metas)
                index.keys.update((c, k.mean_keys.to(torch.float16)) for c, k in keys.items())
                stacked = set(index.order)  # another refresh may have appended some meanwhile
                fresh = [c for c in new if c in keys and c not in stacked]
                if index.matrix is not None and fresh:  # newer than every row: appended in order
                    rows = unit_keys([index.keys[c] for c in fresh]).to(torch.float16)
                    index.matrix = torch.cat([index.matrix, rows])
                    index.order = [*index.order, *fresh]
                elif fresh:
                    index.matrix = None
                self.stats["metas_read"] += len(metas)
                self.stats["keys_read"] += len(keys)
        with self._lock:
            self.stats["refreshes"] += 1
            if index.matrix is None and index.keys:
                index.restack()
            metas_now = sorted(index.metas.values(), key=lambda m: m.first_pts)
            return IndexSnapshot(metas_now, index.order, index.matrix)
