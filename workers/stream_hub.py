"""StreamHub: one model serving many streams — encode, segment, caption, read, answer.

This is the whole live pipeline as plain Python (testable without Ray); workers/actors.py hosts a
hub in a Ray actor. Frames go into each stream's RollingMemory (device window + Redis); when
SceneTiling closes a scene, its caption becomes a scheduled job (workers/caption_jobs.py) made from
that scene's chunks alone, one step at a time between vision batches (its tokens in the encoder
scheduler's packed decode, with the answers: ``decode_with``), and stored with the scene (a
``scene.captioned`` event tells every gateway). For a checkpoint with ``scene_check`` every
kept frame is also read once for the content index (workers/reading_jobs.py, frame_reader.py), in
turn with the captions; other checkpoints index their captions' words. Questions are answered by
the QAEngine on the stream's memory, live window included (`when` from the index).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

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
from scenekv.qa.engine import Answer, QAEngine
from scenekv.qa.key_index import KeyIndex
from scenekv.qa.memory_view import MemoryView
from scenekv.qa.scene_heads import is_when_question
from scenekv.vlm import Generation, SamplingParams, VLMBackend

from .caption_jobs import CaptionJob, CaptionQueue
from .frame_reader import FrameReader, ReadingsHook
from .reading_jobs import ReadingQueue
from .watch_runner import WatchRunner
from .webhooks import WebhookSender

log = logging.getLogger(__name__)

CAPTION_PROMPT = "Describe what happens in this part of the video in one short sentence."
MEMORY_FAILURES = (WriteFailed, WriterBusy, StreamBusy, StreamNotFound)
RECOVER_SCENES = 16  # a re-opened stream's newest scenes checked for a caption a crash left out
T = TypeVar("T")
Run = Callable[[Callable[[], T]], T]  # where a unit of model work runs: now, or on the encoder's scheduler


def _now(fn: Callable[[], T]) -> T:
    return fn()


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
        # Closed scenes waiting for their caption: advanced by background_step (the encoder's scheduler
        # between vision batches) and drained by end; a failed one is retried, never failing a frame.
        self.captions_due = CaptionQueue(self._caption_steps, fatal=MEMORY_FAILURES)
        # Frame readings for the content index (a scene_check checkpoint only), stepped in turn with
        # the captions; every stored reading goes to the ``on_readings`` callbacks.
        self.on_readings: list[ReadingsHook] = []
        self.reads_frames = bool(backend.prompt_format.scene_check)
        self.reader = FrameReader(
            store,
            self.streams,
            self.engine.answerer,
            lru=self.lru,
            device=backend.device,
            hooks=self.on_readings,
        )
        self.readings_due = ReadingQueue(
            self.reader.steps, fatal=MEMORY_FAILURES, keep=self.streams.__contains__
        )
        # Watches: evaluated on each stored reading (or caption, for checkpoints that read no
        # frames); their webhooks posted from one thread of their own.
        self.webhooks = WebhookSender()
        self.watches = WatchRunner(store, self.webhooks)
        self.on_readings.append(self.watches.on_readings)
        self._turn = 0  # which queue the next background step tries first

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
            if sid is not None:  # continued: a crashed predecessor may have left captions due
                self._caption_uncaptioned(sid)
                self._read_later(sid)  # and readings: the stored frames after the index's newest
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
        """Encode frames into the stream; returns progress and the scenes this closed (their
        captions are due: made between batches, announced by ``scene.captioned``)."""
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
                self._read_later(sid)
                closed = [self._scene_dict(s, self._caption_later(sid, s)) for s in appended.closed]
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

    def _view(self, mem: RollingMemory | None, sid: str) -> MemoryView:
        """What a question reads: Redis through the kept index and LRU, plus a live stream's window."""
        kwargs = {"index": self.index, "lru": self.lru, "device": self.backend.device}
        return MemoryView.of(mem, **kwargs) if mem is not None else MemoryView(self.store, sid, **kwargs)

    def _caption_later(self, sid: str, scene: Scene) -> CaptionJob | None:
        if not self.captions:
            return None
        return self.captions_due.add(sid, scene.index, scene.start, scene.end)

    def _scene_dict(self, scene: Scene, job: CaptionJob | None) -> dict:
        """The closed scene as the caller reports it: its caption once made, else None and whether
        it is still coming (the ``scene.captioned`` event brings it)."""
        out = {"scene_id": scene.index, "start": scene.start, "end": scene.end, "frames": scene.frames}
        if job is not None:
            out["caption"], out["caption_pending"] = job.text, job.pending
        return out

    def _read_later(self, sid: str) -> None:
        """The stream's frames after its index's newest are due to be read (a scene_check model)."""
        if self.reads_frames:
            self.readings_due.add(sid, lambda: self.store.read_through(sid))

    def decode_with(self, start: Callable[[Generation], object]) -> None:
        """Hand the captions' and frame readings' generations to ``start`` (an EncoderScheduler's
        ``adopt``): decoded in its packed steps together with the answers, a few jobs at a time,
        instead of alone, one forward a step, by whoever steps the queues."""
        self.captions_due.decode = self.readings_due.decode = start

    def background_due(self) -> bool:
        """Whether a caption or a reading waits (the scheduler skips the model lock when not)."""
        return bool(self.captions_due.jobs) or self.readings_due.due() > 0

    def background_step(self, sid: str | None = None) -> float | None:
        """One step of background work: captions and frame readings take turns, so neither starves
        the other. Returns as ``caption_step`` does. The caller holds the model lock."""
        queues = [self.captions_due.step, self.readings_due.step]
        waits = []
        for step in queues[self._turn :] + queues[: self._turn]:
            wait = step(sid)
            if wait == 0.0:
                self._turn = 1 - self._turn
                return 0.0
            waits.append(wait)
        return min((w for w in waits if w is not None), default=None)

    def caption_step(self, sid: str | None = None) -> float | None:
        """One unit of caption work (plan, a decode step where no scheduler decodes it, or the store
        write) on the first due scene: what the encoder's scheduler runs between vision batches.
        None: nothing waits; 0.0: maybe more now; else seconds until a retry is due. The caller
        holds the model lock."""
        return self.captions_due.step(sid)

    def drain_captions(self, sid: str, run: Run = _now, *, readings: bool = False) -> None:
        """Make every waiting caption of ``sid`` now (and its due frame readings, with ``readings``),
        step by step, each step through ``run`` (on an encoder: its scheduler, which runs other
        streams' frames and answers between steps)."""
        step = self.background_step if readings else self.caption_step
        while True:
            wait = run(lambda: step(sid))
            if wait is None:
                return
            if wait > 0:
                time.sleep(wait)

    def _caption_steps(self, job: CaptionJob) -> Iterator[Generation | None]:
        """A caption from the chunks of the scene alone (no retrieval): planned and loaded, its
        generation handed to the queue (decoded before the next step), then stored; returns the
        stored text. Reads the live window while the stream is open here, Redis after."""
        answer = self._caption_answer(job.sid, job.start, job.end)
        generation = getattr(answer, "generation", None)
        if isinstance(generation, Generation):
            yield generation
        else:  # an answer that is not one generation: a step per delta
            yield
            for _ in answer:
                yield
        text = answer.text.strip()
        mem = self.streams.get(job.sid)
        if mem is not None:
            mem.flush()  # the scene's own record is written behind; the caption goes on top of it
        self.store.set_caption(job.sid, job.index, text)
        if not self.reads_frames:  # the content index of a checkpoint without frame readings
            self.store.put_caption_words(job.sid, job.start, text)
            self.watches.on_caption(job.sid, job.index, job.start, job.end, text)
        return text

    def _caption_answer(self, sid: str, start: float, end: float) -> Answer:
        view = self._view(self.streams.get(sid), sid)
        last = max(start, end - 1e-3)  # a scene's end is the next scene's start: exclusive
        now = view.now()
        if now is not None:
            last = max(start, min(last, now))  # the stream's last scene ends after its last frame
        return self.engine.ask(
            view, CAPTION_PROMPT, range_=(start, last), params=self.caption_params, top_k=0
        )

    def caption_missing(self, sid: str, run: Run = _now) -> int:
        """Caption the closed scenes that have none (a stream ingested with captions off); how many."""
        jobs = run(lambda: self._queue_uncaptioned(sid))  # the queue is the scheduler's to step
        self.drain_captions(sid, run)
        return sum(1 for job in jobs if job.text is not None)

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
        if is_when_question(question):  # first use of a stream recorded before the index: read it now
            self._read_later(sid)
        return self.engine.ask(view, question, **kwargs)

    def end(self, sid: str, run: Run = _now) -> list[dict]:
        """End of stream: close the last scene, make every caption still due (and those of its
        recent scenes that a crashed encoder left without one), then write everything to Redis and
        mark the stream ended, so whoever sees it end already finds every caption.
        Each step goes through ``run`` (other streams are encoded between them)."""

        def close() -> tuple[RollingMemory, list]:
            with self._lock:
                mem = self.streams.get(sid)
                if mem is None:
                    raise StreamNotFound(f"stream {sid!r} is not open here")
                try:
                    last = [(s, self._caption_later(sid, s)) for s in mem.close_last_scene()]
                    self._caption_uncaptioned(sid)
                except BaseException:
                    self._drop(sid, mem)
                    raise
                return mem, last

        mem, last = run(close)

        def close_more(final: bool) -> bool:
            """Scenes closed by frames that came while captions were made; True once ended."""
            if self.streams.get(sid) is not mem or mem.closed:
                raise StreamNotFound(f"stream {sid!r} was dropped here while it ended")
            more = [(s, self._caption_later(sid, s)) for s in mem.close_last_scene()]
            last.extend(more)
            if more and not final:
                return False
            # appearances still on screen end first: whoever sees the stream end has them
            fps = self.store.info(sid).fps
            self.watches.finish(sid, 1.0 / fps if fps and fps > 0 else 1.0)
            mem.end()
            return True

        try:
            for attempt in range(3):
                self.drain_captions(sid, run, readings=True)
                if run(lambda final=attempt == 2: close_more(final)):
                    break
        except BaseException:
            try:
                run(lambda: self._drop(sid, mem))  # its lease and writer go; what Redis holds stays
            except RuntimeError:  # the scheduler is closing: drop it here, nothing else runs now
                self._drop(sid, mem)
            raise
        with self._lock:
            if self.streams.get(sid) is mem:
                self.streams.pop(sid)
                self.readings_due.drop(sid)  # all read; a continued stream starts a new job
        return [self._scene_dict(s, job) for s, job in last]

    def _caption_uncaptioned(self, sid: str, recent: int = RECOVER_SCENES) -> None:
        """Queue the stream's recent closed scenes that have no caption: an encoder that died
        after closing them took their due captions with it (a stream ingested with captions off
        is captioned in full by ``caption_missing``, not here)."""
        if self.captions:
            self._queue_uncaptioned(sid, recent, retry_left_out=False)

    def _queue_uncaptioned(
        self, sid: str, recent: int | None = None, *, retry_left_out: bool = True
    ) -> list[CaptionJob]:
        """Jobs for the closed scenes of ``sid`` (of its ``recent`` newest scenes) that have no
        caption; ``retry_left_out`` off: not those whose caption was given up here."""
        scenes = self.store.scenes(sid)
        return [
            self.captions_due.add(sid, s.index, s.start, s.end)
            for s in (scenes[-recent:] if recent else scenes)
            if s.closed and not s.caption and s.end is not None
            if retry_left_out or (sid, s.index) not in self.captions_due.left_out
        ]

    def _drop(self, sid: str, mem: RollingMemory | None = None) -> None:
        """Forget the stream's window and due captions (only if it is still ``mem``, if given)."""
        with self._lock:
            if mem is not None and self.streams.get(sid) is not mem:
                return
            mem = self.streams.pop(sid, None)
            self.captions_due.drop(sid)
            self.readings_due.drop(sid)
        self.watches.forget(sid)
        if mem is not None:
            with contextlib.suppress(Exception):  # its writes are failing already; do not wait on them
                mem.abandon()

    def forget(self, sid: str) -> None:
        """Drop a stream whose memory failed (deleted, expired, taken over): no write is attempted."""
        self._drop(sid)

    def detach(self, sid: str) -> None:
        """Write the stream's window to Redis and let it go; its waiting captions stay due (they are
        made from Redis then)."""
        with self._lock:
            mem = self.streams.pop(sid, None)
        self.watches.forget(sid)
        if mem is not None:
            mem.detach()

    def close(self) -> None:
        left = self.captions_due.pending()
        if left:  # `caption_missing` (scenekv caption) fills them in later
            log.warning("%d scene captions were still due at shutdown and are left out", left)
        if self.readings_due.due():  # read when the stream is continued or asked `when`
            log.warning("frame readings of %d streams were still due at shutdown", self.readings_due.due())
        for sid in list(self.streams):
            try:
                self.detach(sid)
            except Exception:  # keep closing the others; the error is logged
                log.exception("detaching stream %s failed", sid)
        self.webhooks.close(drain_s=5.0)  # hits found last (a file's end) still go out


def _same_size(indices: list[int], requests) -> list[list[int]]:
    """``indices`` grouped so that one vision call only sees frames of one size (in order)."""
    groups: dict = {}
    for i in indices:
        shapes = {np.shape(img) for _, img in requests[i][1]}
        key = shapes.pop() if len(shapes) == 1 else ("alone", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())
