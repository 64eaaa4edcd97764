"""StreamHub: one model serving many streams — encode, segment, caption, answer.

This is the whole live pipeline as plain Python (testable without Ray); workers/ hosts a hub in a
Ray actor. Frames go into each stream's RollingMemory (device window + Redis); when SceneTiling
closes a scene, a short caption is generated from that scene's chunks alone and stored with the
scene (a ``scene.captioned`` event tells every gateway); questions are answered by the QAEngine on
the stream's memory, live window included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Sequence

import numpy as np

from scenekv.defaults import DEFAULT_CARRIERS
from scenekv.errors import UserError
from scenekv.memory import (
    DeviceLRU,
    MemoryStore,
    RollingConfig,
    RollingMemory,
    Scene,
    StreamBusy,
    StreamNotFound,
    WriteFailed,
    WriterBusy,
)
from scenekv.vlm import SamplingParams, VLMBackend

from .engine import Answer, QAEngine
from .key_index import KeyIndex
from .memory_view import StoreMemory

log = logging.getLogger(__name__)

CAPTION_PROMPT = "Describe what happens in this part of the video in one short sentence."
CAPTION_TRIES = 5  # a scene's caption is tried this often (on the next appends) before it is left out
MEMORY_FAILURES = (WriteFailed, WriterBusy, StreamBusy, StreamNotFound)


class StreamHub:
    def __init__(
        self,
        backend: VLMBackend,
        store: MemoryStore,
        *,
        rolling: RollingConfig | None = None,
        captions: bool = True,
        caption_tokens: int = 32,
        budget_tokens: int = 4096,
        top_k: int = 4,
        lru_bytes: int = 256 << 20,
    ) -> None:
        self.backend, self.store = backend, store
        self.rolling_config = rolling or RollingConfig()
        self.captions = captions
        self.caption_params = SamplingParams(max_new_tokens=caption_tokens)
        self.engine = QAEngine(backend, budget_tokens=budget_tokens, top_k=top_k)
        # Retrieval keys and chunk metadata kept between questions: a question reads the chunk ids
        # and what was written since, not the whole stream (cost flat in stream length).
        self.index = KeyIndex()
        # Decoded chunks recently answered from, on the model's device: repeated questions about the
        # same moments do not read their KV from Redis again.
        self.lru = DeviceLRU(lru_bytes)
        self.streams: dict[str, RollingMemory] = {}
        self._lock = threading.RLock()
        # Scenes whose caption failed (e.g. Redis refused the write): retried on the stream's next
        # appends and at its end, never failing the frames that closed them.
        self.pending_captions: dict[str, dict[int, tuple[Scene, int]]] = {}

    # -- streams ------------------------------------------------------------------------------
    def open(
        self,
        *,
        sid: str | None = None,
        source: str = "",
        fps: float = 1.0,
        carriers: str = DEFAULT_CARRIERS,
        takeover: bool = False,
        retention: dict | None = None,
    ) -> dict:
        """Start a stream, or continue ``sid`` where it stopped (after a restart too).

        ``takeover`` attaches even if another writer's lease is still live (a crashed predecessor).
        ``retention``: memory.Retention fields for a new stream (a stored stream keeps its own).
        """
        config = self.rolling_config
        if retention is not None:
            config = dataclasses.replace(config, retention=retention)  # RollingConfig makes it a Retention
        with self._lock:
            if sid is not None and sid in self.streams:
                return self.describe(sid)
            if sid is not None:
                mem = RollingMemory.open(
                    self.store,
                    self.backend,
                    sid,
                    carriers=carriers,
                    source=source,
                    fps=fps,
                    config=config,
                    takeover=takeover,
                )
            else:
                mem = RollingMemory.create(
                    self.store,
                    self.backend,
                    carriers=carriers,
                    source=source,
                    fps=fps,
                    config=config,
                )
            self.streams[mem.sid] = mem
            return self.describe(mem.sid)

    def describe(self, sid: str) -> dict:
        mem = self._stream(sid)
        info = self.store.info(sid)
        return {
            "stream_id": sid,
            "model": self.backend.model_id,
            "random_weights": self.backend.is_random,
            "world_only": self.backend.world_only,
            "fps": info.fps,
            "carriers": str(mem.session.spec),
            "last_pts": mem.last_pts,
            "source": info.source,
        }

    def _stream(self, sid: str) -> RollingMemory:
        mem = self.streams.get(sid)
        if mem is None:
            raise StreamNotFound(f"stream {sid!r} is not open here")
        return mem

    def append(self, sid: str, frames: Sequence[tuple[float, np.ndarray]]) -> dict:
        """Encode frames into the stream; returns progress and the scenes this closed (captioned)."""
        (result,) = self.append_batch([(sid, frames)])
        if isinstance(result, Exception):
            raise result
        return result

    def append_batch(self, requests: Sequence[tuple[str, Sequence[tuple[float, np.ndarray]]]]) -> list:
        """Several streams' frames with one vision forward: the tower runs once on all of them, then
        each stream prefills its own carriers (its KV is what a lone append would have made).
        Returns, per request, its ``append`` result or the exception it raised; one stream's error
        never fails another's frames."""
        mems, out = [], []
        for sid, _ in requests:
            mem = self.streams.get(sid)
            mems.append(mem)
            out.append(None if mem is not None else StreamNotFound(f"stream {sid!r} is not open here"))
        live = [i for i, mem in enumerate(mems) if mem is not None and requests[i][1]]
        features = {}
        for group in _same_size(live, requests):  # a processor may resize a call to its first frame's size
            images = [img for i in group for _, img in requests[i][1]]
            need = any(mems[i].session.spec.needs_importance for i in group)
            feats = self.backend.encode_frames(images, need_importance=need)
            features.update(zip(group, feats.split([len(requests[i][1]) for i in group]), strict=True))
        for i, f in features.items():
            sid, frames = requests[i]
            try:
                appended = mems[i].append(frames, f)
                closed = [self._scene_dict(sid, s) for s in appended.closed]
                closed += self.retry_captions(sid, skip={s.index for s in appended.closed})
                out[i] = {"frames": len(appended.records), "last_pts": mems[i].last_pts, "closed": closed}
            except Exception as exc:
                out[i] = exc
        for i, mem in enumerate(mems):
            if mem is not None and not requests[i][1]:
                try:
                    mem.append([])  # nothing to encode, but a failed memory still says so
                    out[i] = {"frames": 0, "last_pts": mem.last_pts, "closed": []}
                except Exception as exc:
                    out[i] = exc
        return out

    def _view(self, mem: RollingMemory | None, sid: str) -> StoreMemory:
        """What a question reads: Redis through the kept index and LRU, plus a live stream's window."""
        kwargs = {"index": self.index, "lru": self.lru, "device": self.backend.device}
        return StoreMemory.of(mem, **kwargs) if mem is not None else StoreMemory(self.store, sid, **kwargs)

    def _scene_dict(self, sid: str, scene: Scene, tried: int = 0, *, last_try: bool = False) -> dict:
        """The closed scene as the caller reports it, captioned. ``tried``: earlier failed tries."""
        out = {"scene_id": scene.index, "start": scene.start, "end": scene.end, "frames": scene.frames}
        if self.captions:
            try:
                out["caption"] = self.caption(sid, scene.start, scene.end, scene.index)
            except MEMORY_FAILURES:
                raise  # the stream's memory is unusable: that is the append's failure, not the caption's
            except Exception as exc:  # the scene is stored and closed; only its caption waits
                tries = CAPTION_TRIES if last_try else tried + 1
                if tries < CAPTION_TRIES:
                    self.pending_captions.setdefault(sid, {})[scene.index] = (scene, tries)
                log.warning(
                    "caption of scene %d of %s failed (try %d of %d): %s: %s",
                    scene.index,
                    sid,
                    tries,
                    CAPTION_TRIES,
                    type(exc).__name__,
                    exc,
                )
                out["caption"], out["caption_pending"] = None, tries < CAPTION_TRIES  # None: no caption yet
        return out

    def retry_captions(self, sid: str, skip: set[int] = frozenset(), *, last_try: bool = False) -> list[dict]:
        """Caption again the scenes of ``sid`` whose caption failed; the ones now captioned."""
        done = []
        for index, (scene, tried) in sorted(self.pending_captions.get(sid, {}).items()):
            if index in skip:
                continue
            self.pending_captions[sid].pop(index, None)
            out = self._scene_dict(sid, scene, tried, last_try=last_try)
            if not out.get("caption_pending"):
                done.append(out)
        if not self.pending_captions.get(sid):
            self.pending_captions.pop(sid, None)
        return done

    def caption(self, sid: str, start: float, end: float, index: int | None = None) -> str:
        """A caption from the chunks of [start, end] alone (no retrieval), stored with the scene."""
        mem = self.streams.get(sid)
        view = self._view(mem, sid)
        last = max(start, end - 1e-3)  # a scene's end is the next scene's start: exclusive
        now = view.now()
        if now is not None:
            last = max(start, min(last, now))  # the stream's last scene ends after its last frame
        answer = self.engine.ask(
            view, CAPTION_PROMPT, range_=(start, last), params=self.caption_params, top_k=0
        )
        text = "".join(answer).strip()
        if index is not None:
            if mem is not None:
                mem.flush()  # the scene's own record is written behind; the caption goes on top of it
            self.store.set_caption(sid, index, text)
        return text

    def ask(self, sid: str, question: str, **kwargs) -> Answer:
        """Answer on a stream open here (live window included) or on any stored stream."""
        mem = self.streams.get(sid)
        if mem is not None:
            view = self._view(mem, sid)
        elif self.store.exists(sid):
            recorded = self.store.info(sid).model
            if recorded != self.backend.model_id:  # another model's KV reads as noise to this one
                raise UserError(
                    f"stream {sid!r} was recorded with model {recorded}; this server runs "
                    f"{self.backend.model_id} and cannot read its memory",
                    code="model_mismatch",
                )
            view = self._view(None, sid)
        else:
            raise StreamNotFound(f"no stream {sid!r}")
        return self.engine.ask(view, question, **kwargs)

    def end(self, sid: str) -> list[dict]:
        """End of stream: close and caption the last scene, then write everything to Redis and mark
        the stream ended, so whoever sees it end already finds every caption."""
        with self._lock:
            mem = self.streams.get(sid)
        if mem is None:
            raise StreamNotFound(f"stream {sid!r} is not open here")
        try:
            last = mem.close_last_scene()
            closed = [self._scene_dict(sid, s, last_try=True) for s in last]
            closed += self.retry_captions(sid, skip={s.index for s in last}, last_try=True)
        except BaseException:
            mem.abandon()  # its lease and writer go; what Redis holds stays (attach continues it)
            raise
        finally:
            with self._lock:
                self.streams.pop(sid, None)
                self.pending_captions.pop(sid, None)  # `caption_missing` can still fill them in
        mem.end()
        return closed

    def forget(self, sid: str) -> None:
        """Drop a stream whose memory failed (deleted, expired, taken over): no write is attempted."""
        with self._lock:
            mem = self.streams.pop(sid, None)
            self.pending_captions.pop(sid, None)
        if mem is not None:
            with contextlib.suppress(Exception):  # its writes are failing already; do not wait on them
                mem.abandon()

    def detach(self, sid: str) -> None:
        with self._lock:
            mem = self.streams.pop(sid, None)
            self.pending_captions.pop(sid, None)
        if mem is not None:
            mem.detach()

    def close(self) -> None:
        for sid in list(self.streams):
            try:
                self.detach(sid)
            except Exception:  # keep closing the others; the error is logged
                log.exception("detaching stream %s failed", sid)


def _same_size(indices: list[int], requests) -> list[list[int]]:
    """``indices`` grouped so that one vision call only sees frames of one size (in order)."""
    groups: dict = {}
    for i in indices:
        shapes = {np.shape(img) for _, img in requests[i][1]}
        key = shapes.pop() if len(shapes) == 1 else ("alone", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())
