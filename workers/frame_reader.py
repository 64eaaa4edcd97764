"""One frame's readings for the content index: find the stream's next frame, read it, store it.

The frame after a job's cursor is on the encoder's device while the stream is open here and the
readings keep up (a live stream: read a batch after it arrives, before it is written), else in Redis
(a backlog, a restart, a stream recorded before the index, one not open here). Either way it is the
KV the frame was prefilled with, read alone on the sink as the scene scan reads it (qa/scene_check.py)
with the canonical question of each kind (qa/when_index.py): one model read for its object, one for
its background, handed to the reading queue as two generations (decoded together in the encoder
scheduler's packed steps). The stored reading goes to every ``on_readings`` callback (the seam for
watches).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import torch

from scenekv.memory import DeviceLRU, MemoryStore, Reading, RollingMemory
from scenekv.memory.content_index import BACKGROUND, OBJECT
from scenekv.memory.records import text
from scenekv.qa.when_index import CANONICAL
from scenekv.vlm import Answerer, Generation, KVChunk

from .reading_jobs import ReadingJob

log = logging.getLogger(__name__)

ReadingsHook = Callable[[str, list[Reading]], None]


class FrameReader:
    def __init__(
        self,
        store: MemoryStore,
        streams: dict[str, RollingMemory],
        answerer: Answerer,
        *,
        lru: DeviceLRU | None = None,
        device: torch.device | str | None = None,
        hooks: list[ReadingsHook] | None = None,
    ) -> None:
        """``streams``: the hub's open streams (their device windows); ``hooks``: called with each
        frame's stored reading, in the thread that made it (a hook's error is logged, not raised)."""
        self.store, self.streams, self.answerer = store, streams, answerer
        self.lru, self.device = lru, device
        self.hooks = hooks if hooks is not None else []
        self.check = {kind: answerer.check_ids(CANONICAL[kind]) for kind in (OBJECT, BACKGROUND)}
        self.reads = 0  # model reads made (tests count them)

    def steps(self, job: ReadingJob) -> Iterator[tuple[Generation, Generation]]:
        """Read and store the frame after ``job.after``: the first ``next()`` finds it and yields its
        two reads (object, background) as generations, decoded before the next (reading_jobs.py),
        which stores what they said; returns its pts, or None when the stream has no frame after
        it (yet)."""
        frame = self.next_frame(job.sid, job.after)
        if frame is None:
            return None
        job.current = frame.first_pts
        seen, background = self._reading(OBJECT, frame), self._reading(BACKGROUND, frame)
        yield seen, background
        reading = Reading(frame.first_pts, seen.text.strip(), background.text.strip())
        self.store.put_reading(job.sid, reading)
        for hook in self.hooks:
            try:
                hook(job.sid, [reading])
            except Exception:
                log.exception("a readings hook failed on %s at %s", job.sid, reading.pts)
        return reading.pts

    def _reading(self, kind: str, frame: KVChunk) -> Generation:
        """The read of ``frame`` with ``kind``'s canonical question, not run yet (Answerer.read's)."""
        self.reads += 1
        return self.answerer.reading(self.check[kind], [frame])

    def next_frame(self, sid: str, after: float | None) -> KVChunk | None:
        """The stream's first kept frame after ``after`` (the first of all for None), alone."""
        mem = self.streams.get(sid)
        if mem is None:
            return self._stored_after(sid, after)
        with mem.lock:
            resident = _resident(mem)
            if resident and after is not None and after >= resident[0][1] - 1e-6:
                return _export_after(mem, resident, after)  # the cursor is inside the window
            stored = self._stored_after(sid, after)
            if stored is None and resident:  # frames may be on their way to Redis: wait for them
                mem.flush()
                stored = self._stored_after(sid, after)
            if stored is not None:
                return stored
            return _export_after(mem, resident, after)

    def _stored_after(self, sid: str, after: float | None) -> KVChunk | None:
        """The first frame after ``after`` in Redis: in the chunk holding ``after`` or the next one."""
        k = self.store.keys(sid)
        client = self.store.client
        if after is None:
            cids = client.zrange(k.chunks, 0, 0)
        else:
            at = repr(float(after))
            cids = client.zrevrangebyscore(k.chunks, at, "-inf", start=0, num=1)
            cids += client.zrangebyscore(k.chunks, f"({at}", "+inf", start=0, num=1)
        cids = [text(c) for c in cids]
        metas = self.store.chunk_metas(sid, cids)
        for cid in cids:
            meta = metas.get(cid)
            if meta is None or (after is not None and meta.last_pts <= after + 1e-6):
                continue
            for chunk in self.store.load_chunks(sid, [cid], lru=self.lru, device=self.device, strict=False):
                later = [f.pts for f in chunk.frames if after is None or f.pts > after + 1e-6]
                if later:
                    return chunk.frame_at(later[0])
        return None


def _resident(mem: RollingMemory) -> list[tuple[int, float]]:
    """(index, pts) of the kept frames on the stream's device, time order."""
    on_device = set(mem.session.resident_frames)
    return [(r.index, r.pts) for r in mem.session.frames if r.index in on_device]


def _export_after(
    mem: RollingMemory, resident: list[tuple[int, float]], after: float | None
) -> KVChunk | None:
    index = next((i for i, pts in resident if after is None or pts > after + 1e-6), None)
    return mem.session.export(index, index) if index is not None else None
