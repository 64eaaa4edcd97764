"""RollingMemory: one stream's device window, its scenes, and everything older in Redis.

It owns a StreamSession. After each append it

1. feeds every frame's signature and picture to the causal SceneTiler (scene.open / scene.closed go to Redis),
2. while more than ``window`` kept frames are resident on the device, exports the oldest ones as a
   chunk of up to ``chunk_frames`` kept frames (cut at scene boundaries, so every chunk belongs to
   exactly one scene), hands it to the write-behind ChunkWriter and evicts it from the session,
3. queues retention (compaction, hard caps) and TTL refreshes behind the writes.

The device therefore holds the sink plus at most ``window`` kept frames, whatever the stream length.
``window`` must exceed ``chunk_frames + lookahead`` so that a frame leaves the device only after the
tiler has decided whether a scene boundary follows it.

Every chunk write carries the resume state of the stream *as of that chunk's last frame* (next
index and position, last pts, last kept frame and signature, and the SceneTiler state snapshotted
when that frame was pushed) in the same atomic step. So the stored state never runs ahead of the
stored KV: after a crash, ``attach`` resumes just after the newest stored frame, a source re-sends
everything after ``last_pts`` and the frames that were only on the device are encoded again with
exactly the numbering, positions and scenes they had (scene writes are idempotent per scene, so the
scenes those frames close are not duplicated). ``detach()`` (graceful stop) first writes the
resident window as chunks and then the newest state.

Only the lease holder writes: every write script checks the stream's ``:owner`` token, and a
background timer renews the lease while the memory is open (also when no frames arrive).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from scenekv.defaults import DEFAULT_CARRIERS
from scenekv.errors import UserError
from scenekv.vlm import FrameRecord, StreamSession, VLMBackend

from .allocator import trim_heap
from .chunk_cuts import ChunkCut, plan_cuts, scene_of
from .codec import chunk_keys, encode_chunk
from .lease import LeaseKeeper
from .opening import Opened, register, restore
from .quant import DEFAULT_KV_DTYPE, check_kv_dtype
from .records import StreamBusy, StreamInfo
from .resume import StreamResume
from .retention import Retention, RetentionReport, enforce
from .scenetiling import Scene, SceneTiler, TilingParams
from .store import MemoryStore
from .writer import ChunkWriter, WriteFailed

log = logging.getLogger(__name__)

__all__ = ["Appended", "RollingConfig", "RollingMemory", "StreamBusy"]


@dataclass(frozen=True)
class RollingConfig:
    window: int = 32  # kept frames resident on the device (at most)
    chunk_frames: int = 8  # kept frames per Redis chunk (fewer at scene boundaries and on detach)
    retention: Retention = field(default_factory=Retention)
    tiler: TilingParams = field(default_factory=TilingParams)  # SceneTiler's (new streams only)
    writer_max_jobs: int = 16
    writer_max_bytes: int = 64 << 20
    put_timeout: float = 60.0  # how long append may block on a full write queue before WriterBusy
    lease_s: float = 30.0  # writer lease: another process may not append while it is held
    kv_dtype: str = DEFAULT_KV_DTYPE  # how chunks' KV is stored in Redis (memory/quant.py)

    def __post_init__(self) -> None:
        if isinstance(self.tiler, dict):  # options that crossed a process boundary as JSON-ish dicts
            object.__setattr__(self, "tiler", TilingParams.from_dict(self.tiler))
        if isinstance(self.retention, dict):
            object.__setattr__(self, "retention", Retention(**self.retention))

    def check(self, lookahead: int) -> None:
        check_kv_dtype(self.kv_dtype)
        if self.chunk_frames < 1:
            raise UserError("chunk_frames must be >= 1")
        if self.window < self.chunk_frames + lookahead:
            raise UserError(
                f"window ({self.window}) must be at least chunk_frames ({self.chunk_frames}) + scene "
                f"look-ahead ({lookahead}) frames"
            )


@dataclass
class Appended:
    records: list[FrameRecord]
    closed: list[Scene]  # scenes that closed during this append


class RollingMemory:
    def __init__(
        self,
        store: MemoryStore,
        session: StreamSession,
        sid: str,
        *,
        tiler: SceneTiler,
        config: RollingConfig | None = None,
        writer: ChunkWriter | None = None,
        token: str | None = None,
    ) -> None:
        """Use :meth:`create`, :meth:`attach` or :meth:`open`; this wires already-checked parts."""
        self.store, self.session, self.sid, self.tiler = store, session, sid, tiler
        self.config = config or RollingConfig()
        self.config.check(tiler.lookahead)
        self._own_writer = writer is None
        # held for a whole append (encode, tile, evict, queue writes): a reader that holds it sees
        # every frame either on the device or in the write queue, never in between
        self.lock = threading.RLock()
        self.writer = writer or ChunkWriter(
            store,
            max_jobs=self.config.writer_max_jobs,
            max_bytes=self.config.writer_max_bytes,
            put_timeout=self.config.put_timeout,
        )
        self.token = token or secrets.token_hex(8)
        self._sigs: dict[int, list[torch.Tensor]] = {}  # kept frame -> signatures it stands for
        # kept frame still on the device -> (pts, own signature, tiler state right after its push):
        # the resume state stored with a chunk describes the stream as of the chunk's last frame
        self._snapshots: dict[int, tuple[float, torch.Tensor, dict]] = {}
        open_scene = tiler.open_scene
        self._scene_starts: list[tuple[int, int]] = [(open_scene[1], open_scene[0])] if open_scene else []
        self._last_touch = time.monotonic()
        self.retention_reports: list[RetentionReport] = []
        self.retention_failures = 0  # runs that failed (the writer and the stream carry on)
        self.chunks_written = 0
        self.closed = False
        self._failed: BaseException | None = None
        self._lease = LeaseKeeper(store, sid, self.token, self.config.lease_s)
        weakref.finalize(self, self._lease.stop, 0)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        store: MemoryStore,
        backend: VLMBackend,
        *,
        carriers: str = DEFAULT_CARRIERS,
        sid: str | None = None,
        source: str = "",
        fps: float = 1.0,
        config: RollingConfig | None = None,
        writer: ChunkWriter | None = None,
    ) -> RollingMemory:
        """Start a new stream (raises StreamExists if ``sid`` is taken)."""
        config = config or RollingConfig()
        opened = register(store, backend, config, carriers=carriers, sid=sid, source=source, fps=fps)
        return cls._wired(store, opened, writer)

    @classmethod
    def attach(
        cls,
        store: MemoryStore,
        backend: VLMBackend,
        sid: str,
        *,
        config: RollingConfig | None = None,
        writer: ChunkWriter | None = None,
        takeover: bool = False,
    ) -> RollingMemory:
        """Continue an existing stream after a restart: numbering, positions, dedup and scenes go on.

        Refuses (StreamBusy) while another live process holds the stream's lease, unless ``takeover``.
        """
        opened = restore(store, backend, sid, config or RollingConfig(), takeover=takeover)
        memory = cls._wired(store, opened, writer)
        store.update_stream(
            sid,
            {"status": "live"},
            event="stream.attached",
            data={"next_index": opened.next_index},
            owner=opened.token,
            event_key=f"attached:{opened.token}",
        )
        return memory

    @classmethod
    def _wired(cls, store: MemoryStore, opened: Opened, writer: ChunkWriter | None) -> RollingMemory:
        return cls(
            store,
            opened.session,
            opened.sid,
            tiler=opened.tiler,
            config=opened.config,
            writer=writer,
            token=opened.token,
        )

    @classmethod
    def open(cls, store: MemoryStore, backend: VLMBackend, sid: str, **kwargs) -> RollingMemory:
        """Attach to ``sid`` if it exists, else create it (``carriers``, ``source``, ``fps`` apply then)."""
        if store.exists(sid):
            kwargs = {k: v for k, v in kwargs.items() if k in ("config", "writer", "takeover")}
            return cls.attach(store, backend, sid, **kwargs)
        kwargs.pop("takeover", None)
        return cls.create(store, backend, sid=sid, **kwargs)

    # -- streaming ------------------------------------------------------------------------------
    @property
    def last_pts(self) -> float | None:
        """pts of the newest frame; after attach, frames at or before it are rejected by append.

        After a graceful detach that is the newest frame the stream saw; after a crash, the newest
        frame stored in Redis (a source resumes just after it and re-sends what was lost).
        """
        return self.session.last_pts

    def append(self, frames: Sequence[tuple[float, np.ndarray]], features=None) -> Appended:
        """Encode and prefill frames, tile scenes, move what left the window to Redis (write-behind).
        ``features``: the frames' vision features, when a batch across streams computed them."""
        with self.lock:
            return self._append(frames, features)

    def _append(self, frames: Sequence[tuple[float, np.ndarray]], features=None) -> Appended:
        self._check_usable()
        records = self.session.append(frames, features)
        # From here the session has the frames: every one must reach the tiler, and if a write
        # cannot be queued the memory is marked failed rather than left half-updated.
        closed: list[Scene] = []
        writes: list[tuple] = []
        dedup = self.session.spec.dedup_tau is not None
        try:
            for r, (_, image) in zip(records, frames, strict=True):
                if r.position is not None:
                    self._sigs[r.index] = [r.signature]
                elif r.kept_as in self._sigs:
                    self._sigs[r.kept_as].append(r.signature)
                opens = self.tiler.open_scene is None  # this frame starts the stream's (next) first scene
                scenes = self.tiler.push(r.pts, r.signature, r.index, image=image)
                if opens and self.tiler.open_scene is not None:
                    index, first, start = self.tiler.open_scene
                    self._scene_starts.append((first, index))
                    writes.append(("open", index, first, start))
                for scene in scenes:
                    closed.append(scene)
                    writes.append(("close", scene))
                    if self.tiler.open_scene is not None:
                        index, first, start = self.tiler.open_scene
                        self._scene_starts.append((first, index))
                        writes.append(("open", index, first, start))
                if r.position is not None:
                    self._snapshots[r.index] = (r.pts, r.signature if dedup else None, self.tiler.state())
            for op in writes:
                if op[0] == "open":
                    self._open_scene_record(*op[1:])
                else:
                    self._close_scene(op[1], reopen=False)
            self._export(keep=self.config.window)
            self._housekeeping()
        except BaseException as exc:
            self._failed = exc
            raise
        return Appended(records, closed)

    def _check_usable(self) -> None:
        if self.closed:
            raise UserError("this stream memory is detached; attach again to append", code="detached")
        if self._lease.lost:
            raise StreamBusy(f"{self._lease.lost}; this process may no longer append to it")
        if self._failed is not None:
            raise WriteFailed(
                f"stream {self.sid!r}: an earlier append could not queue its writes ({self._failed}); "
                "this memory is unusable: attach the stream again to continue"
            ) from self._failed
        self.writer.check()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued write is acknowledged by Redis (raises WriteFailed on failure)."""
        self.writer.flush(timeout)

    def detach(self, timeout: float | None = 60.0) -> None:
        """Graceful stop: write the device window to Redis, persist the resume state, release the stream.

        The stream stays open for :meth:`attach` (its current scene is not closed).
        """
        self._finish("detached", timeout)

    def close_last_scene(self) -> list[Scene]:
        """Close the open scene now (end of stream ahead): it can be captioned before ``end``."""
        if self.closed:
            return []
        with self.lock:
            try:
                self._check_usable()
            except BaseException:
                self.abandon()
                raise
            closed = self.tiler.flush()
            for scene in closed:
                self._close_scene(scene, reopen=False)
            return closed

    def end(self, timeout: float | None = 60.0) -> list[Scene]:
        """End of stream: close the last scene, write everything, mark the stream ended."""
        if self.closed:
            return []
        closed = self.close_last_scene()
        if not self.closed:
            self._finish("ended", timeout)
        return closed

    def abandon(self, timeout: float = 1.0) -> None:
        """Stop using this memory without writing anything more (it failed, or was taken over).

        The lease timer stops and the own writer is closed; what Redis acknowledged stays, and the
        stream can be attached again (with ``takeover`` while the lease has not expired).
        """
        self.closed = True
        self._lease.stop()
        if self._own_writer:
            try:
                self.writer.close(timeout=timeout)
            except Exception as exc:  # its writes are failing already
                log.error("stream %s: %s", self.sid, exc)

    def info(self) -> StreamInfo:
        """Redis-side accounting plus this process's device window and writer queue."""
        info = self.store.info(self.sid)
        geo = self.session.backend.geometry
        resident_tokens = self.session.cache.get_seq_length() - self.session.sink_len
        info.extra.update(
            {
                "resident_frames": len(self.session.resident_frames),
                "resident_tokens": resident_tokens,
                "device_bytes": (resident_tokens + self.session.sink_len) * geo.bytes_per_token,
                "writer_pending_jobs": self.writer.pending_jobs,
                "writer_pending_bytes": self.writer.pending_bytes,
                "writer_blocked_s": round(self.writer.stats["blocked_s"], 3),
            }
        )
        return info

    # -- internals ------------------------------------------------------------------------------
    def _close_scene(self, scene: Scene, *, reopen: bool = True) -> None:
        sid, owner = self.sid, self.token
        fields = {
            "end": scene.end,
            "closed": 1,
            "first_frame": scene.first_frame,
            "last_frame": scene.last_frame,
            "frames": scene.frames,
        }
        data = {"start": scene.start, "end": scene.end, "frames": scene.frames}
        self._submit(
            lambda st: st.put_scene(
                sid, scene.index, scene.start, fields, event="scene.closed", data=data, owner=owner
            ),
            label=f"scene {scene.index} closed",
        )
        if reopen and self.tiler.open_scene is not None:
            index, first, start = self.tiler.open_scene
            self._scene_starts.append((first, index))
            self._open_scene_record(index, first, start)

    def _open_scene_record(self, index: int, first: int, start: float) -> None:
        # only_new: after a crash the frames that opened this scene are sent again; a record that is
        # already there (perhaps closed and captioned since) must not be reset
        sid, owner = self.sid, self.token
        fields = {"closed": 0, "first_frame": first, "caption": ""}
        self._submit(
            lambda st: st.put_scene(sid, index, start, fields, owner=owner, only_new=True),
            label=f"scene {index} opened",
        )

    def _export(self, keep: int) -> None:
        cuts = plan_cuts(
            self.session.resident_frames,
            keep=keep,
            chunk_frames=self.config.chunk_frames,
            starts=self._scene_starts,
        )
        for cut in cuts:
            self._write(cut)
        resident = self.session.resident_frames
        # forget scene starts no resident frame needs any more
        if resident and len(self._scene_starts) > 1:
            keep_from = scene_of(self._scene_starts, resident[0])
            self._scene_starts = [s for s in self._scene_starts if s[1] >= keep_from]

    def _write(self, cut: ChunkCut) -> None:
        """Export ``cut`` from the device, queue its write (and a retention run), evict it."""
        chunk = self.session.export(cut.first, cut.last)
        sigs = [s for f in cut.frames for s in self._sigs.pop(f, [])]
        keys = chunk_keys(chunk, torch.stack(sigs) if sigs else None)
        state = self._state_after(cut.last, chunk)
        sid, owner, kv_dtype, scene = self.sid, self.token, self.config.kv_dtype, cut.scene

        def write(st: MemoryStore) -> int:  # encoded (and quantized) here, on the writer's thread
            blob = encode_chunk(chunk, kv_dtype)
            n = st.write_chunk(sid, chunk, keys, scene=scene, state=state, blob=blob, owner=owner)
            del blob
            trim_heap()  # the blob's pages back to the OS: RSS stays flat (memory/allocator.py)
            return n

        self._submit(write, nbytes=chunk.nbytes, label=f"chunk {cut.first}")
        self.session.evict(cut.last)
        self.chunks_written += 1
        if self.config.retention.active:
            policy = self.config.retention
            future = self._submit(  # a failed run is logged; the next chunk's run tries again
                lambda st: enforce(st, sid, policy, owner=owner), label="retention", fatal=False
            )
            future.add_done_callback(self._retention_done)

    def _retention_done(self, future: Future) -> None:
        if future.exception() is not None:  # logged by the writer; the stream goes on
            self.retention_failures += 1
            return
        report = future.result()
        if report.compacted or report.dropped_chunks:
            self.retention_reports = [*self.retention_reports[-99:], report]

    def _state_after(self, last: int, chunk) -> dict:
        """Resume state as of kept frame ``last``, the last frame of ``chunk`` (see the module doc)."""
        snapshot = self._snapshots.get(last)
        for index in [i for i in self._snapshots if i <= last]:
            del self._snapshots[index]
        if snapshot is None:  # not appended by this process (cannot happen): the newest state
            return self._state()
        pts, sig, tiler = snapshot
        newest = self.session.last_pts
        return StreamResume(last + 1, chunk.position + chunk.span, pts, newest, last, sig, tiler).to_fields()

    def _state(self) -> dict:
        """Resume state as of the newest frame (written on detach/end, after the whole window)."""
        rp = self.session.resume_point()
        return StreamResume(
            rp.next_index,
            rp.next_position,
            rp.last_pts,
            rp.last_pts,
            rp.last_kept_index,
            rp.last_signature,
            self.tiler.state(),
        ).to_fields()

    def _submit(self, fn, *, nbytes: int = 0, label: str = "", fatal: bool = True) -> Future:
        return self.writer.submit(fn, nbytes=nbytes, label=label, fatal=fatal)

    def _housekeeping(self) -> None:
        # the writer lease is renewed by self._lease on its own timer, not behind queued writes
        now = time.monotonic()
        sid = self.sid
        ttl = self.store.ttl_s
        if ttl is not None and now - self._last_touch > ttl / 4:
            self._last_touch = now
            self._submit(lambda st: st.touch(sid), label="touch", fatal=False)

    def _finish(self, status: str, timeout: float | None) -> None:
        if self.closed:
            return
        try:
            self._check_usable()
            self._export(keep=0)
            sid, owner, state = self.sid, self.token, {**self._state(), "status": status}
            self._submit(
                lambda st: st.update_stream(
                    sid,
                    state,
                    event=f"stream.{status}",
                    data={"status": status},
                    owner=owner,
                    event_key=f"{status}:{owner}",
                ),
                label=status,
            )
            self._lease.stop()  # before the release job: a late renewal must not re-take the lease
            self._submit(lambda st: st.release(sid, owner), label="release")
            self.writer.flush(timeout)
        finally:
            self.abandon()

    def __enter__(self) -> RollingMemory:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if not self.closed:
            self.detach()
