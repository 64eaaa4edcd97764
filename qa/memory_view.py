"""A stream's memory as the QA engine sees it: chunks in Redis plus the encoder's device window.

Frames leave the encoder's device only when they fall out of its window, so the newest ones are not
in Redis yet. A live view therefore adds the window, exported as chunks at question time (a copy;
the encoder keeps its cache). Stored chunks are addressed by their Redis id, window chunks by
``live:FIRST-LAST`` frame indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from scenekv.memory import DeviceLRU, MemoryStore, RollingMemory, chunk_id
from scenekv.memory.content_index import Hits, Reading
from scenekv.vlm import KVChunk, StreamSession

from .context import ChunkRef
from .key_index import KeyIndex
from .retrieval import score_chunks

LIVE_PREFIX = "live:"


def window_chunks(session: StreamSession, chunk_frames: int = 8) -> list[KVChunk]:
    """The session's resident frames as chunks of up to ``chunk_frames`` kept frames."""
    with session.lock:
        resident = session.resident_frames
        return [
            session.export(group[0], group[-1])
            for group in (resident[i : i + chunk_frames] for i in range(0, len(resident), chunk_frames))
        ]


class MemoryView:
    """One question's view of a stream's memory: its chunks as refs, their scores and loads.

    Made per question, so it holds a consistent listing (what was stored and resident when the
    question came) while the stream goes on writing."""

    def __init__(
        self,
        store: MemoryStore,
        sid: str,
        *,
        live: Sequence[KVChunk] = (),
        lru: DeviceLRU | None = None,
        device: torch.device | str | None = None,
        index: KeyIndex | None = None,
        listing: tuple | None = None,
    ) -> None:
        """``index``: the retrieval index kept between questions (qa/key_index.py); without one the
        view reads every chunk's metadata and keys (a question then costs O(stream length)).
        ``listing``: the index's listing, read earlier under the stream's lock (``of``)."""
        self.store, self.sid, self.lru, self.device = store, sid, lru, device
        self.live = {f"{LIVE_PREFIX}{c.frames[0].index}-{c.frames[-1].index}": c for c in live}
        self._snapshot = index.refresh(store, sid, listing) if index is not None else None
        # a snapshot per question: ids from Redis, the rest kept from before (or all read now)
        self._index = self._snapshot.metas if self._snapshot is not None else store.chunk_index(sid)
        # The stream's own clock (newest frame seen), not the newest frame stored: "the last 30 s" and
        # future-anchor checks follow the stream even while its newest frames are still on an encoder.
        info = store.info(sid)
        self._last_pts = info.newest_pts
        self._fps = info.fps

    @classmethod
    def of(cls, rolling: RollingMemory, **kwargs) -> MemoryView:
        """A view of a live stream: what is in Redis plus the encoder's current window.

        Chunks already evicted from the window but still queued for Redis would be in neither, so
        the queue is flushed first (milliseconds unless Redis is struggling), with appends held off
        until the index is read.
        """
        index = kwargs.get("index")
        with rolling.lock:  # no append may evict a chunk between the flush and the index read
            rolling.flush()
            live = window_chunks(rolling.session, rolling.config.chunk_frames)
            if index is None:
                return cls(rolling.store, rolling.sid, live=live, **kwargs)
            # under the lock only the ids (one round trip); new keys are read after appends resume
            listing = index.listing(rolling.store, rolling.sid)
        return cls(rolling.store, rolling.sid, live=live, listing=listing, **kwargs)

    def now(self) -> float | None:
        times = [t for t in [self._last_pts, *(c.last_pts for c in self.live.values())] if t is not None]
        return max(times) if times else None

    def refs(self) -> list[ChunkRef]:
        live_frames = {f.index for c in self.live.values() for f in c.frames}
        stored = [
            ChunkRef(m.cid, m.first_pts, m.last_pts, m.tokens, m.last_frame - m.first_frame + 1)
            for m in self._index
            if not (m.first_frame in live_frames or m.last_frame in live_frames)  # written while we looked
        ]
        live = [
            ChunkRef(cid, c.first_pts, c.last_pts, c.tokens, len(c.frames)) for cid, c in self.live.items()
        ]
        return stored + live

    def scene_starts(self) -> list[float]:
        """Where each scene SceneTiling found begins (the open one included): `when` contexts."""
        return [s.start for s in self.store.scenes(self.sid)]

    # the content index (memory/content_index.py): what `when` looks up (qa/when_index.py)
    def read_through(self) -> float | None:
        return self.store.read_through(self.sid)

    def index_labels(self) -> dict[str, int]:
        return self.store.index_labels(self.sid)

    def label_hits(self, labels: Sequence[str], start: float, end: float) -> Hits:
        return self.store.label_hits(self.sid, labels, start, end)

    def readings_by_rank(self, ranges: Sequence[tuple[int, int]]) -> list[list[Reading]]:
        return self.store.readings_by_rank(self.sid, ranges)

    def frame_step(self) -> float:
        """Seconds between sampled frames (1 s for a stream of unknown rate)."""
        return 1.0 / self._fps if self._fps and self._fps > 0 else 1.0

    def scores(self, queries: torch.Tensor, cids: Sequence[str]) -> dict[str, float]:
        """Retrieval scores of ``cids`` for a question's ``queries`` (qa/retrieval.py)."""
        wanted = set(cids)
        stored = [c for c in cids if not c.startswith(LIVE_PREFIX)]
        if self._snapshot is not None:
            out = {c: v for c, v in self._snapshot.scores(queries).items() if c in wanted}
        else:
            keys = (
                {cid: k.mean_keys for cid, k in self.store.load_keys(self.sid, stored).items()}
                if stored
                else {}
            )
            out = score_chunks(queries, keys)
        live = {
            c: self.live[c].content_keys
            for c in cids
            if c in self.live and self.live[c].content_keys is not None
        }
        out.update(score_chunks(queries, live))
        return out

    def load(self, cids: Sequence[str]) -> dict[str, KVChunk]:
        """The chunks still there (one MGET): retention may drop one between planning and loading."""
        loaded = {c: self.live[c] for c in cids if c in self.live}
        stored = [c for c in cids if c not in self.live]
        if stored:
            found = self.store.load_chunks(self.sid, stored, lru=self.lru, device=self.device, strict=False)
            loaded.update((chunk_id(chunk), chunk) for chunk in found)
        return loaded
