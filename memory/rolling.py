"""RollingMemory: one stream's device window, its scenes, and everything older in Redis.

It owns a StreamSession. After each append it

1. feeds every frame's signature to the causal SceneTiler (scene.open / scene.closed go to Redis),
2. while more than ``window`` kept frames are resident on the device, exports the oldest ones as a
   chunk of up to ``chunk_frames`` kept frames (cut at scene boundaries, so every chunk belongs to
   exactly one scene), hands it to the write-behind ChunkWriter and evicts it from the session,
3. queues retention (compaction, hard caps) and TTL refreshes behind the writes.

The device therefore holds the sink plus at most ``window`` kept frames, whatever the stream length.
``window`` must exceed ``chunk_frames + lookahead`` so that a frame leaves the device only after the
tiler has decided whether a scene boundary follows it.

Every chunk write carries the stream's resume state (ResumePoint incl. the last signature, tiler
state) in the same atomic step, so ``attach`` after a restart continues numbering, positions, dedup
and scene tiling exactly. ``detach()`` (graceful stop) first writes the resident window as chunks;
after a crash the frames still on the device (at most ``window`` + the queued writes) are lost and
the stream resumes from the last acknowledged chunk.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from scenekv.errors import UserError
from scenekv.vlm import FrameRecord, StreamSession, VLMBackend
from scenekv.vlm.session import ResumePoint

from .codec import chunk_keys, encode_chunk
from .retention import Retention, RetentionReport, enforce
from .scenetiling import Scene, SceneTiler
from .store import MemoryStore, StreamInfo, StreamNotFound
from .writer import ChunkWriter, WriteFailed

log = logging.getLogger(__name__)


class StreamBusy(UserError):
    code = "stream_busy"


@dataclass(frozen=True)
class RollingConfig:
    window: int = 32  # kept frames resident on the device (at most)
    chunk_frames: int = 8  # kept frames per Redis chunk (fewer at scene boundaries and on detach)
    retention: Retention = field(default_factory=Retention)
    tiler: dict = field(default_factory=dict)  # SceneTiler parameters (new streams only)
    writer_max_jobs: int = 16
    writer_max_bytes: int = 64 << 20
    put_timeout: float = 60.0  # how long append may block on a full write queue before WriterBusy
    lease_s: float = 30.0  # writer lease: another process may not append while it is held

    def check(self, lookahead: int) -> None:
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
        self.writer = writer or ChunkWriter(
            store,
            max_jobs=self.config.writer_max_jobs,
            max_bytes=self.config.writer_max_bytes,
            put_timeout=self.config.put_timeout,
        )
        self.token = token or secrets.token_hex(8)
        self._sigs: dict[int, list[torch.Tensor]] = {}  # kept frame -> signatures it stands for
        open_scene = tiler.open_scene
        self._scene_starts: list[tuple[int, int]] = [(open_scene[1], open_scene[0])] if open_scene else []
        self._last_touch = self._last_claim = time.monotonic()
        self.retention_reports: list[RetentionReport] = []
        self.chunks_written = 0
        self.closed = False

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        store: MemoryStore,
        backend: VLMBackend,
        *,
        carriers: str = "pool:16",
        sid: str | None = None,
        source: str = "",
        fps: float = 1.0,
        config: RollingConfig | None = None,
        writer: ChunkWriter | None = None,
    ) -> RollingMemory:
        """Start a new stream (raises StreamExists if ``sid`` is taken)."""
        config = config or RollingConfig()
        tiler = SceneTiler(**config.tiler)
        config.check(tiler.lookahead)
        session = StreamSession(backend, carriers)
        sid = store.create_stream(
            sid,
            source=source,
            model=backend.model_id,
            fps=fps,
            carriers=str(session.spec),
            fields={
                "window": config.window,
                "chunk_frames": config.chunk_frames,
                "next_pos": session.next_position,
                "sink_len": session.sink_len,
                "tiler": json.dumps(tiler.state()),
            },
        )
        token = secrets.token_hex(8)
        store.claim(sid, token, config.lease_s)
        return cls(store, session, sid, tiler=tiler, config=config, writer=writer, token=token)

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
        config = config or RollingConfig()
        h = store.stream_fields(sid)
        model = h["model"].decode()
        if model != backend.model_id:
            raise UserError(
                f"stream {sid!r} was recorded with model {model}; its KV cannot be continued with "
                f"{backend.model_id}",
                code="model_mismatch",
            )
        token = secrets.token_hex(8)
        if not store.claim(sid, token, config.lease_s, takeover=takeover):
            raise StreamBusy(
                f"stream {sid!r} is being written by another process (lease {config.lease_s:.0f}s); "
                "wait for it to stop, or take it over"
            )
        sig = h.get("last_signature") or b""
        resume = ResumePoint(
            next_index=int(h.get("next_index") or 0),
            next_position=int(h.get("next_pos") or 0),
            last_pts=float(h["last_pts"]) if h.get("last_pts") else None,
            last_kept_index=int(h.get("last_kept") or 0),
            last_signature=torch.from_numpy(np.frombuffer(sig, dtype=np.float32).copy()) if sig else None,
        )
        session = StreamSession(backend, h["carriers"].decode(), resume=resume if resume.next_index else None)
        if session.next_position < session.sink_len:  # a stream that never wrote a frame
            session.next_position = session.sink_len
        tiler_state = h.get("tiler")
        tiler = SceneTiler.from_state(json.loads(tiler_state)) if tiler_state else SceneTiler(**config.tiler)
        memory = cls(store, session, sid, tiler=tiler, config=config, writer=writer, token=token)
        store.update_stream(
            sid, {"status": "live"}, event="stream.attached", data={"next_index": resume.next_index}
        )
        return memory

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
        """pts of the newest frame; after attach, frames at or before it are rejected by append."""
        return self.session.last_pts

    def append(self, frames: Sequence[tuple[float, np.ndarray]]) -> Appended:
        """Encode and prefill frames, tile scenes, move what left the window to Redis (write-behind)."""
        if self.closed:
            raise UserError("this stream memory is detached; attach again to append", code="detached")
        self.writer.check()
        records = self.session.append(frames)
        closed: list[Scene] = []
        for r in records:
            if r.position is not None:
                self._sigs[r.index] = [r.signature]
            elif r.kept_as in self._sigs:
                self._sigs[r.kept_as].append(r.signature)
            opens = self.tiler.open_scene is None  # this frame starts the stream's (next) first scene
            scenes = self.tiler.push(r.pts, r.signature, r.index)
            if opens and self.tiler.open_scene is not None:
                index, first, start = self.tiler.open_scene
                self._scene_starts.append((first, index))
                self._open_scene_record(index, first, start)
            for scene in scenes:
                closed.append(scene)
                self._close_scene(scene)
        self._export(keep=self.config.window)
        self._housekeeping()
        return Appended(records, closed)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued write is acknowledged by Redis (raises WriteFailed on failure)."""
        self.writer.flush(timeout)

    def detach(self, timeout: float | None = 60.0) -> None:
        """Graceful stop: write the device window to Redis, persist the resume state, release the stream.

        The stream stays open for :meth:`attach` (its current scene is not closed).
        """
        self._finish("detached", timeout)

    def end(self, timeout: float | None = 60.0) -> list[Scene]:
        """End of stream: close the last scene, write everything, mark the stream ended."""
        closed = self.tiler.flush()
        for scene in closed:
            self._close_scene(scene, reopen=False)
        self._finish("ended", timeout)
        return closed

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
    def _scene_of(self, index: int) -> int:
        scene = self._scene_starts[0][1] if self._scene_starts else 0
        for first, sc in self._scene_starts:
            if first <= index:
                scene = sc
        return scene

    def _next_start_after(self, index: int) -> int | None:
        for first, _ in self._scene_starts:
            if first > index:
                return first
        return None

    def _close_scene(self, scene: Scene, *, reopen: bool = True) -> None:
        sid = self.sid
        fields = {
            "end": scene.end,
            "closed": 1,
            "first_frame": scene.first_frame,
            "last_frame": scene.last_frame,
            "frames": scene.frames,
        }
        data = {"start": scene.start, "end": scene.end, "frames": scene.frames}
        self._submit(
            lambda st: st.put_scene(sid, scene.index, scene.start, fields, event="scene.closed", data=data),
            label=f"scene {scene.index} closed",
        )
        if reopen and self.tiler.open_scene is not None:
            index, first, start = self.tiler.open_scene
            self._scene_starts.append((first, index))
            self._open_scene_record(index, first, start)

    def _open_scene_record(self, index: int, first: int, start: float) -> None:
        sid = self.sid
        fields = {"closed": 0, "first_frame": first, "caption": ""}
        self._submit(lambda st: st.put_scene(sid, index, start, fields), label=f"scene {index} opened")

    def _export(self, keep: int) -> None:
        resident = self.session.resident_frames
        while len(resident) > keep:
            first = resident[0]
            boundary = self._next_start_after(first)
            take = [f for f in resident[: self.config.chunk_frames] if boundary is None or f < boundary]
            chunk = self.session.export(take[0], take[-1])
            sigs = [s for f in take for s in self._sigs.pop(f, [])]
            keys = chunk_keys(chunk, torch.stack(sigs) if sigs else None)
            scene = self._scene_of(take[0])
            state = self._state()
            sid = self.sid

            def write(st: MemoryStore, sid=sid, chunk=chunk, keys=keys, scene=scene, state=state) -> int:
                return st.write_chunk(sid, chunk, keys, scene=scene, state=state, blob=encode_chunk(chunk))

            self._submit(write, nbytes=chunk.nbytes, label=f"chunk {take[0]}")
            self.session.evict(take[-1])
            self.chunks_written += 1
            if self.config.retention.active:
                policy = self.config.retention
                future = self._submit(lambda st, sid=sid, p=policy: enforce(st, sid, p), label="retention")
                future.add_done_callback(self._retention_done)
            resident = self.session.resident_frames
        # forget scene starts no resident frame needs any more
        if resident and len(self._scene_starts) > 1:
            keep_from = self._scene_of(resident[0])
            self._scene_starts = [s for s in self._scene_starts if s[1] >= keep_from]

    def _retention_done(self, future: Future) -> None:
        if future.exception() is None:
            report = future.result()
            if report.compacted or report.dropped_chunks:
                self.retention_reports = [*self.retention_reports[-99:], report]

    def _state(self) -> dict:
        rp = self.session.resume_point()
        sig = rp.last_signature
        return {
            "next_index": rp.next_index,
            "next_pos": rp.next_position,
            "last_pts": "" if rp.last_pts is None else repr(float(rp.last_pts)),
            "last_kept": rp.last_kept_index,
            "last_signature": b"" if sig is None else sig.detach().float().cpu().numpy().tobytes(),
            "tiler": json.dumps(self.tiler.state()),
        }

    def _submit(self, fn, *, nbytes: int = 0, label: str = "") -> Future:
        return self.writer.submit(fn, nbytes=nbytes, label=label)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        sid, token = self.sid, self.token
        if now - self._last_claim > self.config.lease_s / 3:
            self._last_claim = now
            lease = self.config.lease_s

            def renew(st: MemoryStore) -> None:
                if not st.claim(sid, token, lease):
                    raise StreamBusy(f"stream {sid!r} was taken over by another process")

            self._submit(renew, label="lease")
        ttl = self.store.ttl_s
        if ttl is not None and now - self._last_touch > ttl / 4:
            self._last_touch = now
            self._submit(lambda st: st.touch(sid), label="touch")

    def _finish(self, status: str, timeout: float | None) -> None:
        if self.closed:
            return
        try:
            self._export(keep=0)
            sid, state = self.sid, {**self._state(), "status": status}
            self._submit(
                lambda st: st.update_stream(sid, state, event=f"stream.{status}", data={"status": status}),
                label=status,
            )
            self._submit(lambda st: st.release(sid, self.token), label="release")
            self.writer.flush(timeout)
        finally:
            self.closed = True
            if self._own_writer:
                try:
                    self.writer.close(timeout=1)
                except (WriteFailed, StreamNotFound) as exc:
                    log.error("stream %s: %s", self.sid, exc)

    def __enter__(self) -> RollingMemory:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if not self.closed:
            self.detach()
