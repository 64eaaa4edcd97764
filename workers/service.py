"""SceneKVService: what the CLI and the web gateway talk to; the only owner of Ray.

Embedded defaults: a local Ray (``ray.init`` on loopback, small object store) unless ``ray_address``
joins a cluster; the Redis at ``redis_url`` / REDIS_URL / 127.0.0.1:6379, else a private
redis-server child; the model ``auto`` (default checkpoint, or the tiny random model offline); one
encoder per GPU of the cluster, or one on a CPU-only one (``encoders``), streams placed on the
least-loaded (workers/encoder_pool.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Generator, Iterator

import numpy as np
import ray

from scenekv.defaults import DEFAULT_CARRIERS, DEFAULT_PREFIX
from scenekv.errors import UserError, unwrap
from scenekv.memory import MemoryStore, RollingConfig, new_sid
from scenekv.memory.local_redis import ensure_redis
from scenekv.qa.policies import MemoryPolicy

from .actors import DecoderActor, EncoderActor, RangeDecoder
from .encoder_config import EncoderConfig
from .encoder_pool import NAMESPACE, EncoderPool, gpu_encoders
from .errors import EncoderUnavailable, StreamResumed
from .unsaved import UnsavedFrames

log = logging.getLogger(__name__)


class UnknownStream(UserError):
    code = "unknown_stream"


class SceneKVService:
    def __init__(
        self,
        *,
        model: str = "auto",
        redis_url: str | None = None,
        ray_address: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        rolling: dict | None = None,
        captions: bool = True,
        num_cpus: int | None = None,
        worker_logs: bool = True,
        live_retention: dict | None = None,
        encoders: int | None = None,
        load_timeout: float = 900.0,
    ) -> None:
        """``encoders``: how many EncoderActors (each loads the model); default one per GPU of the
        cluster, one where it has none.

        ``worker_logs`` off: the actors' output (transformers' warnings, "(EncoderActor pid=…)"
        lines) stays in Ray's session logs instead of this process's terminal.

        ``live_retention``: the retention policy (memory.Retention fields) of live and push streams,
        which never end; file streams keep everything. A session may ask for less (``start_stream``).

        ``load_timeout``: seconds the encoders get to load the model; an actor the cluster cannot
        place (no free GPU, a dead node) is an error then, not a start that waits forever.
        """
        if encoders is not None and encoders < 1:  # before anything starts, so nothing is left behind
            raise UserError(f"--encoders must be at least 1, got {encoders}")
        self.live_retention = dict(live_retention or {})
        self.redis_url, self.redis_how, self._redis_child = ensure_redis(redis_url)
        log.info(self.redis_how)
        self.ray_address = ray_address or os.environ.get("RAY_ADDRESS") or None
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            if self.ray_address:
                ray.init(
                    address=self.ray_address,
                    namespace=NAMESPACE,
                    logging_level="ERROR",
                    log_to_driver=worker_logs,
                )
            else:
                ray.init(
                    namespace=NAMESPACE,
                    num_cpus=num_cpus or os.cpu_count() or 2,
                    include_dashboard=False,
                    object_store_memory=512 * 2**20,
                    _node_ip_address="127.0.0.1",
                    logging_level="ERROR",
                    log_to_driver=worker_logs,
                )
        self.store = MemoryStore(self.redis_url, prefix)
        moved = self.store.migrate_untagged()
        if moved:
            log.info("moved %d streams to the hash-tagged key layout (Redis Cluster ready)", len(moved))
        if model == "auto" and not self.ray_address:  # decided here: the caller's log says which and why
            from scenekv.vlm.loading import resolve_auto

            model = resolve_auto()
        config = EncoderConfig(
            device=device,
            dtype=dtype,
            prefix=prefix,
            rolling=RollingConfig(**(rolling or {})),
            captions=captions,
        )
        pool = None
        try:  # fails here, loudly, if the model cannot load (the actor's own error, e.g. UserError)
            gpus = gpu_encoders(device)
            count = encoders if encoders is not None else max(1, gpus)
            if gpus and count > gpus:
                raise UserError(
                    f"{count} encoders need {count} GPUs; the cluster has {gpus} (or --device cpu)"
                )
            pool = EncoderPool.start(EncoderActor, count, model, self.redis_url, config, gpus=gpus > 0)
            self.model = _described(pool, model, load_timeout)
            self.pool = pool
        except Exception:
            for actor in pool.handles.values() if pool is not None else ():
                ray.kill(actor, no_restart=True)
            self.store.close()
            if self._owns_ray:
                ray.shutdown()
            if self._redis_child is not None:
                self._redis_child.stop()
            raise
        self._decoders: dict[str, tuple] = {}  # sid -> (actor, run ref)
        self._streams: set[str] = set()
        self._unsaved: dict[str, UnsavedFrames] = {}  # push streams: encoded, not yet in Redis
        self._touched: dict[str, float] = {}  # push streams open here: monotonic time of last use
        self._lock = threading.Lock()

    # -- streams --------------------------------------------------------------------------------
    def start_stream(
        self,
        source: str,
        *,
        fps: float = 1.0,
        carriers: str = DEFAULT_CARRIERS,
        sid: str | None = None,
        decode: bool = True,
        retention: dict | None = None,
    ) -> dict:
        """Open a stream; ``source`` is "push" (frames come from push_frame) or a file path / URL that
        a DecoderActor starts reading at once (unless ``decode`` is off: ingest_ranges feeds it).

        ``retention``: Retention fields for this stream, each at most the server's (``live_retention``);
        live and push streams get the server's policy where a field is not given, files keep all."""
        if not 0 < fps <= 30:
            raise UserError(f"fps must be in (0, 30], got {fps:g}", code="bad_request")
        live = source == "push" or (self._check_source(source) is True)
        policy = self._retention(retention or {}) if live else None
        sid = sid or new_sid()  # named here, so it is placed before it exists
        try:
            info = self._on(sid, "open", sid, source, fps, carriers, policy)
        except BaseException:
            self.pool.release(sid)  # refused (bad carriers, ...): no record for a stream that is not
            raise
        with self._lock:
            self._streams.add(sid)
            if source == "push":
                self._touched[sid] = time.monotonic()
            if source != "push" and decode and sid not in self._decoders:
                decoder = DecoderActor.remote()
                ref = decoder.run.remote(self.pool, sid, source, fps, 8, info["last_pts"])
                self._decoders[sid] = (decoder, ref)
        return info

    @staticmethod
    def _check_source(source: str) -> bool:
        """Open-and-close once here so a bad file or URL is one clear error now, not a dead actor
        later; returns whether the source is live (a camera or stream, not a file)."""
        from scenekv.ingest import open_source

        with open_source(source, fps=1.0, max_side=64) as opened:
            return bool(opened.live)

    def _retention(self, asked: dict) -> dict:
        from scenekv.memory.retention import narrowed

        return narrowed(self.live_retention, asked)

    def push_frame(self, sid: str, pts: float, image: np.ndarray) -> dict:
        """Append one pushed frame (blocks while the encoder is busy: that is the backpressure).

        The frame is kept until Redis holds it. If the encoder died (EncoderUnavailable: call again
        with the same frame once it is back) its successor re-opens the stream from Redis, and the
        frames that were only on the dead one's device are replayed before this one: an encoded
        frame is never lost.
        """
        self._known(sid)
        unsaved = self._unsaved_of(sid)
        with unsaved.lock:
            unsaved.add(float(pts), image)
            try:
                result = _drive(self._delivery(unsaved, [(float(pts), image)]), self._appender(sid))
            except EncoderUnavailable:
                raise  # the caller sends it again: keep it
            except BaseException:
                unsaved.discard(float(pts))  # refused (bad pts, write failure): never replay it
                raise
            if len(unsaved) > 8:
                unsaved.saved_through(self.store.stored_pts(sid))
        return result

    async def push_frame_async(
        self, sid: str, pts: float, image: np.ndarray, *, on_call: Callable[[float], None] | None = None
    ) -> dict:
        """``push_frame`` for an event loop: the append is an awaited Ray ref, so a frame waiting
        for its vision batch holds no thread (only the short Redis reads hop to one). One pusher
        at a time per stream, as in ``push_frame``: the stream's lock is taken without blocking
        the loop, after the loop's own lock for the stream. ``on_call(t)``: the moment the first
        append is sent to the encoder (the gateway's share of a frame's latency ends there)."""
        if sid not in self._streams:
            await asyncio.to_thread(self._known, sid)
        # Shielded: a client that goes away mid-frame leaves the frame to finish (a thread would
        # have), so its copy is kept or dropped by what the encoder did, and the lock is let go.
        push = asyncio.ensure_future(self._push_async(sid, float(pts), image, on_call))
        push.add_done_callback(_retrieved)
        return await asyncio.shield(push)

    async def _push_async(self, sid: str, pts: float, image: np.ndarray, on_call) -> dict:
        unsaved = self._unsaved_of(sid)
        async with unsaved.async_lock():
            while not unsaved.lock.acquire(blocking=False):  # a thread (end, settle) holds it
                await asyncio.sleep(0.002)
            try:
                unsaved.add(pts, image)
                try:
                    steps = self._delivery(unsaved, [(pts, image)])
                    result = await _drive_async(steps, self._appender_async(sid, on_call))
                except EncoderUnavailable:
                    raise
                except BaseException:
                    unsaved.discard(pts)
                    raise
                if len(unsaved) > 8 and unsaved.pushes % 8 == 0:  # a Redis read every 8th frame
                    unsaved.saved_through(await asyncio.to_thread(self.store.stored_pts, sid))
            finally:
                unsaved.lock.release()
        return result

    def _unsaved_of(self, sid: str) -> UnsavedFrames:
        with self._lock:
            self._touched[sid] = time.monotonic()
            return self._unsaved.setdefault(sid, UnsavedFrames())

    def drop_unsent(self, sid: str, after: float | None) -> None:
        """The client was told to send the frames after ``after`` again: drop their copies."""
        unsaved = self._unsaved.get(sid)
        if unsaved is not None:
            with unsaved.lock:
                unsaved.drop_after(after)

    @staticmethod
    def _delivery(unsaved: UnsavedFrames, batch: list) -> Generator[list, object, dict]:
        """The appends that deliver ``batch``, replaying first what a re-opened stream lost: yields
        each append's frames and is sent its result (or thrown its StreamResumed); returns the
        merged result. The caller holds unsaved.lock; _drive / _drive_async make the calls."""
        if unsaved.replay:
            batch = unsaved.after(unsaved.replay_after)
        for _ in range(3):  # the encoder can die again while frames are replayed
            try:
                closed: list = []
                for i in range(0, max(1, len(batch)), 8):
                    result = yield batch[i : i + 8]
                    closed += result.get("closed", [])
                unsaved.replay = False
                return {**result, "closed": closed}
            except StreamResumed as exc:  # replay, in order, everything newer than Redis holds
                unsaved.replay, unsaved.replay_after = True, unwrap(exc).last_pts
                batch = unsaved.after(unsaved.replay_after)
        raise EncoderUnavailable("the encoder keeps restarting; send the frame again")

    def _appender(self, sid: str):
        return lambda frames: self._on(sid, "append", sid, frames)

    def _appender_async(self, sid: str, on_call: Callable[[float], None] | None = None):
        async def append(frames: list) -> dict:
            nonlocal on_call
            called, on_call = on_call, None  # the first append of a delivery only
            return await self._on_async(sid, "append", sid, frames, on_call=called)

        return append

    def _settle(self, sid: str) -> list[dict]:
        """Before a push stream ends or detaches: make sure a restarted encoder has every frame."""
        unsaved = self._unsaved.get(sid)
        if unsaved is None or not len(unsaved):
            return []
        with unsaved.lock:  # an empty append: a re-opened stream answers StreamResumed -> replay
            return _drive(self._delivery(unsaved, []), self._appender(sid))["closed"]

    def _stream_lock(self, sid: str):
        """The push stream's lock (see UnsavedFrames.lock); nothing to hold for other streams."""
        unsaved = self._unsaved.get(sid)
        return unsaved.lock if unsaved is not None else contextlib.nullcontext()

    @property
    def encoder(self) -> ray.actor.ActorHandle:
        """The first encoder (the only one unless ``encoders`` asked for more)."""
        return self.pool.first()

    def encoder_of(self, sid: str) -> ray.actor.ActorHandle:
        return self.pool.for_stream(sid)[1]

    def _on(self, sid: str, method: str, *args, place: bool = True):
        """``method(*args)`` on the stream's encoder. If that encoder is dead the stream moves to
        the least-loaded live one and the call is made there (which re-opens it from Redis: an
        append answers StreamResumed, and the caller replays); with no other live one,
        EncoderUnavailable (the caller tries again while Ray restarts it). ``place`` off: a read,
        which never records a placement (see EncoderPool.for_stream)."""
        name, encoder = self.pool.for_stream(sid, place=place)
        try:
            return ray.get(getattr(encoder, method).remote(*args))
        except ray.exceptions.RayActorError as exc:
            moved, encoder = self.pool.replace(sid, name)
            if moved == name:
                raise _unavailable(exc) from None
        try:
            return ray.get(getattr(encoder, method).remote(*args))
        except ray.exceptions.RayActorError as exc:
            raise _unavailable(exc) from None

    async def _on_async(self, sid: str, method: str, *args, on_call: Callable[[float], None] | None = None):
        """``_on`` for a push stream, awaiting the call's ref (no thread held while it runs).
        A push stream is placed and moved by this service's pool alone (a file's decoder moves
        only its own stream), so the pool's last answer is current and needs no Redis read; a
        first placement and a move hop to a thread. ``on_call(t)``: just before the call."""
        name = self.pool.known_name(sid)
        if name is not None:
            encoder = self.pool.handles[name]
        else:
            name, encoder = await asyncio.to_thread(self.pool.for_stream, sid)
        if on_call is not None:
            on_call(time.perf_counter())
        try:
            return await getattr(encoder, method).remote(*args)
        except ray.exceptions.RayActorError as exc:
            moved, encoder = await asyncio.to_thread(self.pool.replace, sid, name)
            if moved == name:
                raise _unavailable(exc) from None
        try:
            return await getattr(encoder, method).remote(*args)
        except ray.exceptions.RayActorError as exc:
            raise _unavailable(exc) from None

    def ingest_ranges(
        self,
        source: str,
        sid: str,
        *,
        duration: float,
        fps: float = 1.0,
        parts: int = 2,
        after: float | None = None,
        on_batch=None,
    ) -> int:
        """Encode a file into stream ``sid`` with ``parts`` time ranges decoded in parallel by Ray actors.

        Each range seeks to its start, so no actor decodes from the beginning; batches reach the
        encoder strictly in time order. ``after`` resumes a stream after its last stored frame.
        Returns the number of frames encoded; ``on_batch(pts)`` reports progress.
        """
        from ray.util.queue import Empty, Queue

        self._known(sid)
        # strictly after the last stored frame: the first range sees that frame and samples on exactly
        # as one pass would (after + half a slot would skip a slot when ``after`` is late in its own)
        begin = 0.0 if after is None else after + 1e-4
        parts = max(1, min(parts, int((duration - begin) * fps) // 8 or 1))
        step = (duration - begin) / parts
        bounds = [
            (begin + i * step, None if i == parts - 1 else begin + (i + 1) * step) for i in range(parts)
        ]
        queues = [Queue(maxsize=4) for _ in bounds]
        decoders = [RangeDecoder.remote() for _ in bounds]
        runs = [
            d.run.remote(source, fps, a, b, q) for d, (a, b), q in zip(decoders, bounds, queues, strict=True)
        ]
        # Frames reach the encoder in batches of 8 counted from the first frame, whatever the range
        # cuts: a frame's KV depends on which frames were on the device when it was prefilled, so
        # the same batches as one DecoderActor pass give the same memory.
        frames, pending = 0, []
        try:
            for queue, run in zip(queues, runs, strict=True):
                while True:
                    try:
                        batch = queue.get(timeout=1.0)
                    except Empty:
                        ready, _ = ray.wait([run], timeout=0)
                        if ready and queue.empty():  # finished without its end marker: it failed
                            try:
                                ray.get(run)
                            except ray.exceptions.RayTaskError as exc:
                                cause = exc.cause if isinstance(exc.cause, UserError) else None
                                raise cause or UserError(f"{source}: {exc}", code="internal") from None
                            raise UserError(
                                f"{source}: a range decoder stopped early", code="internal"
                            ) from None
                        continue
                    if batch is None:
                        for text in ray.get(run).get("warnings", []):
                            log.warning("%s", text)
                        break
                    pending += batch
                    while len(pending) >= 8:
                        frames += self._append_batch(sid, pending[:8], on_batch)
                        pending = pending[8:]
            if pending:
                frames += self._append_batch(sid, pending, on_batch)
        finally:
            for d in decoders:
                ray.kill(d)
            for q in queues:
                q.shutdown()
        return frames

    def _append_batch(self, sid: str, batch: list, on_batch) -> int:
        self._on(sid, "append", sid, batch)
        if on_batch is not None:
            on_batch(batch[-1][0])
        return len(batch)

    def progress(self, sid: str) -> dict:
        self._known(sid)
        decoder = self._decoders.get(sid)
        out = ray.get(decoder[0].progress.remote()) if decoder else {"status": "push"}
        return _progress(out, self._on(sid, "info", sid, place=False))

    async def progress_async(self, sid: str) -> dict:
        """``progress`` for an event loop: the actors' answers are awaited, no thread is held."""
        if sid not in self._streams:
            await asyncio.to_thread(self._known, sid)
        decoder = self._decoders.get(sid)
        out = await decoder[0].progress.remote() if decoder else {"status": "push"}
        encoder = self.pool.known(sid)
        if encoder is None:
            encoder = (await asyncio.to_thread(lambda: self.pool.for_stream(sid, place=False)))[1]
        try:
            info = await asyncio.wait_for(encoder.info.remote(sid), 10)
        except (ray.exceptions.RayActorError, TimeoutError) as exc:
            self.pool.forget(sid)  # moved, or restarting: look it up again next time
            raise _unavailable(exc) from None
        return _progress(out, info)

    def wait_decoded(self, sid: str, timeout: float | None = None) -> dict:
        """For file sources: block until the whole file is encoded; returns the decoder's summary."""
        decoder = self._decoders.get(sid)
        if decoder is None:
            return {"status": "push"}
        result = ray.get(decoder[1], timeout=timeout)
        if result.get("status") == "error":
            err = result["error"]
            raise UserError(err["message"], code=err["code"])
        return result

    def end_stream(self, sid: str) -> list[dict]:
        self._known(sid)
        with self._lock:
            decoder = self._decoders.pop(sid, None)
            self._streams.discard(sid)
        if decoder is not None:
            ray.get(decoder[0].stop.remote())
            try:
                ray.get(decoder[1], timeout=15)
            except ray.exceptions.GetTimeoutError:
                log.warning("decoder of %s did not stop in 15 s; killing it", sid)
            ray.kill(decoder[0])
        with self._stream_lock(sid):
            closed = self._settle(sid)
            closed += self._on(sid, "end", sid)
            self.pool.release(sid)  # closed on its encoder: placed afresh when continued
            with self._lock:
                self._unsaved.pop(sid, None)  # end flushed everything to Redis
                self._touched.pop(sid, None)
        return closed

    def attach(self, sid: str) -> dict:
        """Continue a stream by id (another client's, or one from before a restart)."""
        if not self.store.exists(sid):
            raise UnknownStream(f"no stream {sid!r}")
        with self._stream_lock(sid):
            self._settle(sid)  # a restarted encoder first gets the frames only its predecessor had
            info = self._on(sid, "attach", sid)
            with self._lock:
                self._streams.add(sid)
                if sid not in self._decoders:  # push, or a file read to its end: released when idle
                    self._touched[sid] = time.monotonic()
        return info

    def release_idle(self, idle_s: float, keep: Collection[str] = ()) -> list[str]:
        """End every push stream that got no frame for ``idle_s`` and is not in ``keep`` (streams a
        client is connected to): its last scene closes, everything is written to Redis, and the
        encoder lets go of its device window, lease and writer. ``attach`` continues it later."""
        now = time.monotonic()
        with self._lock:
            for sid in keep:  # a watched stream's idle time starts when its last client leaves
                if sid in self._touched:
                    self._touched[sid] = now
            idle = [sid for sid, t in self._touched.items() if now - t >= idle_s]
        released = []
        for sid in idle:
            try:
                with self._stream_lock(sid):
                    touched = self._touched.get(sid)
                    if touched is None or time.monotonic() - touched < idle_s:
                        continue  # a frame or a client came meanwhile
                    self.end_stream(sid)
                released.append(sid)
                log.info("stream %s: no client and no frame for %.0f s; released", sid, idle_s)
            except Exception as exc:  # tried again at the next sweep
                log.warning("stream %s: releasing it failed: %s", sid, exc)
        return released

    def _known(self, sid: str) -> None:
        if sid not in self._streams and not self.store.exists(sid):
            raise UnknownStream(f"no stream {sid!r}")

    # -- questions --------------------------------------------------------------------------------
    def ask(
        self,
        sid: str,
        question: str,
        *,
        qid: str | None = None,
        at=None,
        range_=None,
        last=None,
        max_tokens: int = 128,
        temperature: float = 0.0,
        policy: str | None = None,
    ) -> Iterator[dict]:
        """Stream {"type": "delta"} messages, then one {"type": "done"} (or {"type": "error"}).

        ``policy``: which frames the answer may read (qa/policies.py; default SceneKV's own plan;
        ``recent``, ``uniform:N`` and ``full`` are the baselines SceneKV-Bench measures)."""
        call = self._question(sid, question, qid, at, range_, last, max_tokens, temperature, policy)
        name, encoder = self.pool.for_stream(sid, place=False)
        for attempt in range(2):  # a dead encoder's question runs again on the stream's next one
            started = False
            try:
                for ref in encoder.ask_stream.options(num_returns="streaming").remote(*call):
                    item = ray.get(ref)
                    started = True
                    yield item
                    if item.get("type") != "delta":
                        return  # the answer is complete: never wait on the actor for the stream's end
                return
            except ray.exceptions.RayActorError as exc:
                name, encoder = self._question_failed(exc, sid, name, started or attempt > 0)

    async def ask_async(
        self,
        sid: str,
        question: str,
        *,
        qid: str | None = None,
        at=None,
        range_=None,
        last=None,
        max_tokens: int = 128,
        temperature: float = 0.0,
        policy: str | None = None,
    ) -> AsyncIterator[dict]:
        """``ask`` for an event loop: Ray's streaming generator is awaited item by item, so an
        answer holds no thread while it streams (only the checks before it run in one)."""
        call = await asyncio.to_thread(
            self._question, sid, question, qid, at, range_, last, max_tokens, temperature, policy
        )
        name, encoder = await asyncio.to_thread(lambda: self.pool.for_stream(sid, place=False))
        for attempt in range(2):
            started = False
            try:
                async for ref in encoder.ask_stream.options(num_returns="streaming").remote(*call):
                    item = await ref
                    started = True
                    yield item
                    if item.get("type") != "delta":
                        return
                return
            except ray.exceptions.RayActorError as exc:
                name, encoder = await asyncio.to_thread(
                    self._question_failed, exc, sid, name, started or attempt > 0
                )

    def _question(self, sid, question, qid, at, range_, last, max_tokens, temperature, policy=None) -> tuple:
        """Checks before a question (and the frames a restarted encoder lacks); the call's args."""
        self._known(sid)
        self._settle(sid)  # after an encoder restart, the question sees every acknowledged frame
        if not 1 <= int(max_tokens) <= 1024:
            raise UserError("max_tokens must be between 1 and 1024", code="bad_request")
        anchor = {"at": at, "range_": range_, "last": last}  # the engine's keyword arguments
        if policy is not None:
            anchor["policy"] = str(MemoryPolicy.parse(policy))  # a bad one fails here, in one line
        params = {"max_new_tokens": int(max_tokens), "temperature": float(temperature)}
        return sid, qid or uuid.uuid4().hex, question, anchor, params

    def _question_failed(self, exc: BaseException, sid: str, name: str, final: bool) -> tuple:
        """The encoder died under a question: where to ask again, or EncoderUnavailable if tokens
        were already streamed (an answer is not spliced across models), it was the second try, or
        there is no other encoder."""
        moved, encoder = (name, None) if final else self.pool.replace(sid, name)
        if final or moved == name:
            raise _unavailable(exc) from None
        self._settle(sid)  # the new encoder gets the frames only the dead one had, first
        return moved, encoder

    def caption_missing(self, sid: str) -> int:
        self._known(sid)
        return self._on(sid, "caption_missing", sid, place=False)

    def cancel(self, qid: str) -> bool:
        """Stop question ``qid`` on whichever encoder runs it; False if none does."""
        refs = [e.cancel.remote(qid) for e in self.pool.handles.values()]  # all asked at once
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=5)
        answers = []
        for ref in ready:
            try:
                answers.append(ray.get(ref))
            except Exception:  # a dead encoder runs no question
                answers.append(False)
        return any(a is True for a in answers)

    async def cancel_async(self, qid: str, timeout: float = 5.0) -> bool:
        """``cancel`` for an event loop (the encoders' answers awaited, no thread held)."""
        refs = [asyncio.ensure_future(e.cancel.remote(qid)) for e in self.pool.handles.values()]
        done, pending = await asyncio.wait(refs, timeout=timeout)
        for future in pending:  # a restarting encoder runs no question
            future.cancel()
        return any(f.result() is True for f in done if f.exception() is None)

    # -- observation ----------------------------------------------------------------------------
    def scenes(self, sid: str) -> list[dict]:
        self._known(sid)
        return [
            {"scene_id": s.index, "start": s.start, "end": s.end, "caption": s.caption, "closed": s.closed}
            for s in self.store.scenes(sid)
        ]

    def caption_track(self, sid: str, fmt: str) -> str:
        """The stream's scene captions as a VTT / SRT / JSONL file's text, as `scenekv caption` writes."""
        from scenekv.qa.captions import render_captions, stream_cues

        self._known(sid)
        return render_captions(stream_cues(self.store, sid), fmt)

    def events(self, sid: str, after: str = "$", block_ms: int = 1000) -> list[tuple[str, str, dict]]:
        return self.store.wait_events(sid, after=after, block_ms=block_ms)

    def encoder_stats(self, timeout: float = 2.0) -> list[dict]:
        """One dict per encoder: its node, pid, device, open streams and work counts
        (EncoderActor.stats); an encoder that does not answer in ``timeout`` has ``error`` instead."""
        refs = {name: e.stats.remote() for name, e in self.pool.handles.items()}
        deadline = time.monotonic() + timeout
        out = []
        for name, ref in refs.items():
            try:
                out.append({"name": name, **ray.get(ref, timeout=max(0.01, deadline - time.monotonic()))})
            except Exception as exc:
                out.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
        return out

    def health(self) -> dict:
        redis_ok = True
        try:
            self.store.ping()
        except Exception:
            redis_ok = False
        keep = ("name", "node", "node_id", "device", "pid", "streams", "error")
        return {
            "redis": {"ok": redis_ok, "url": self.redis_url},
            "ray": {"ok": ray.is_initialized()},
            "model": self.model,
            "encoders": [{k: e[k] for k in keep if k in e} for e in self.encoder_stats()],
        }

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop decoders, flush and detach every stream (each resumes on attach), stop Ray and a
        private Redis, all within ``timeout``: a step that does not answer in time is skipped and
        its actor killed (what Redis acknowledged stays; a hung encoder's window is lost)."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        decoders = list(self._decoders.values())
        self._decoders.clear()
        for decoder, _ in decoders:
            with contextlib.suppress(Exception):
                decoder.stop.remote()
        with contextlib.suppress(Exception):
            ray.wait([run for _, run in decoders], num_returns=len(decoders), timeout=min(15.0, left()))
        for sid in list(self._unsaved):  # a restarted encoder may lack frames the client was told are in
            with contextlib.suppress(Exception):
                self._settle(sid)
        encoders = list(self.pool.handles.values())
        refs = [e.shutdown.remote() for e in encoders]
        try:
            ray.get(refs, timeout=left())
        except ray.exceptions.GetTimeoutError:
            log.warning("an encoder did not detach its streams in time; killing it")
        except Exception:
            log.exception("encoder shutdown")
        with contextlib.suppress(Exception):
            self.pool.close()  # every stream detached: each is placed afresh when continued
        for actor in [*encoders, *(d for d, _ in decoders)]:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if self._owns_ray:
            ray.shutdown()
        if self._redis_child is not None:
            self._redis_child.stop(timeout=left())


def _progress(decoder: dict, info: dict) -> dict:
    return {
        **decoder,
        "last_pts": info.get("last_pts"),
        "memory_bytes": info.get("bytes"),
        "chunks": info.get("chunks"),
        "scenes": info.get("scenes"),
    }


def _described(pool: EncoderPool, model: str, timeout: float) -> dict:
    """The first encoder's ``describe_model``, once every encoder loaded. The first load error is
    raised as soon as it comes, not after the others' wait."""
    refs = [e.describe_model.remote() for e in pool.handles.values()]
    deadline, pending = time.monotonic() + timeout, list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            raise UserError(
                f"the encoders did not load {model} within {timeout:g} s: the cluster may lack "
                "the CPUs or GPUs they ask for (`ray status`), or the checkpoint is slow to read"
            )
        ray.get(ready[0])  # an encoder's load error is raised here, at once
    return ray.get(refs[0])


def _retrieved(task: asyncio.Future) -> None:
    """A shielded push whose caller went away: its outcome is read here, not warned about."""
    if not task.cancelled():
        task.exception()


def _drive(steps: Generator, call) -> dict:
    """Run a delivery (SceneKVService._delivery) with blocking calls."""
    reply, error = None, None
    while True:
        try:
            frames = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value
        try:
            reply, error = call(frames), None
        except StreamResumed as exc:
            reply, error = None, exc


async def _drive_async(steps: Generator, call) -> dict:
    """Run a delivery with awaited calls (the event loop's push path)."""
    reply, error = None, None
    while True:
        try:
            frames = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value
        try:
            reply, error = await call(frames), None
        except StreamResumed as exc:
            reply, error = None, exc


def _unavailable(exc: BaseException) -> EncoderUnavailable:
    return EncoderUnavailable(f"the encoder is restarting ({type(exc).__name__})")
