"""SceneKVService: what the gateway and the CLI talk to; the only owner of Ray. Async only.

Every method that reaches Ray or Redis is a coroutine of one event loop (the gateway's, or the one
``BlockingService`` runs for the CLI): Ray's refs are awaited, so a frame waiting for its vision
batch or an answer streaming holds no thread; only Redis's short reads hop to a thread. Results
are the frozen dataclasses of workers/results.py.

It keeps which streams are open here (and the DecoderActor reading each file or live source) and
composes one part per job: the runtime (Redis, Ray, store, encoders: workers/runtime.py), calls on
a stream's encoder that survive its death (workers/encoder_router.py), pushed frames delivered
without loss (workers/push_delivery.py), a file from parallel time ranges
(workers/bulk_ingest.py) and questions (workers/questions.py). Its state is touched on its event
loop only, so it needs no locks beyond each push stream's (PushDelivery.stream_lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection

import numpy as np
import ray

from scenekv.defaults import DEFAULT_CARRIERS, DEFAULT_PREFIX
from scenekv.errors import UserError
from scenekv.memory import new_sid
from scenekv.memory.owner_keys import key_matches, new_key

from . import bulk_ingest
from .actors import DecoderActor
from .encoder_router import EncoderRouter
from .push_delivery import PushDelivery
from .questions import Questions
from .results import AnswerEvent, ClosedScene, Progress, PushResult, SceneRow, StreamInfo
from .runtime import Runtime
from .scheduler_policy import SchedulerPolicy
from .stream_caps import StreamCaps, StreamSlots

log = logging.getLogger(__name__)


PUSHED = {"status": "push"}  # progress of a stream with no decoder
FINISHED_KEPT = 1000  # last progress of reclaimed decoders kept for `progress` (a dict each)


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
        stream_caps: StreamCaps | None = None,
        scheduling: SchedulerPolicy | None = None,
        start_pool: bool = True,
    ) -> None:
        """Starts the runtime (blocking: Ray, Redis, the model's load); every other method is async.

        ``encoders``: how many EncoderActors (each loads the model); default one per GPU of the
        cluster, one where it has none.

        ``worker_logs`` off: the actors' output (transformers' warnings, "(EncoderActor pid=…)"
        lines) stays in Ray's session logs instead of this process's terminal.

        ``live_retention``: the retention policy (memory.Retention fields) of live and push streams,
        which never end; file streams keep everything. A session may ask for less (``start_stream``).

        ``load_timeout``: seconds the encoders get to load the model; an actor the cluster cannot
        place (no free GPU, a dead node) is an error then, not a start that waits forever.

        ``stream_caps``: how many push, file and live URL streams may be open at once (stream_caps.py;
        None: no caps, as a library or benchmark wants; `scenekv serve` sets them).

        ``scheduling``: the encoders' scheduler policy (None: its defaults).

        On a Ray cluster (``ray_address``) the encoders are the deployment's pool, shared by every
        gateway (workers/encoder_pool.py): found if it runs, started otherwise unless ``start_pool``
        is off (a one-off command then runs encoders of its own).
        """
        self.runtime = Runtime(
            model=model,
            redis_url=redis_url,
            ray_address=ray_address,
            device=device,
            dtype=dtype,
            prefix=prefix,
            rolling=rolling,
            captions=captions,
            num_cpus=num_cpus,
            worker_logs=worker_logs,
            encoders=encoders,
            load_timeout=load_timeout,
            scheduling=scheduling,
            start_pool=start_pool,
        )
        self.live_retention = dict(live_retention or {})
        self.store, self.pool, self.model = self.runtime.store, self.runtime.pool, self.runtime.model
        self.redis_url, self.redis_how = self.runtime.redis_url, self.runtime.redis_how
        self.prefix = prefix  # the Redis key prefix: the gateway's event feed reads under it
        self.ray_address = self.runtime.ray_address
        self.router = EncoderRouter(self.pool)
        self.delivery = PushDelivery(self.router, self.store, self._touch)
        self.questions = Questions(self.pool, self._require_stream, self.delivery)
        self._decoders: dict[str, tuple] = {}  # sid -> (actor, run ref)
        self._streams: set[str] = set()
        # push and live URL streams open here: monotonic time of their last frame or client
        self._touched: dict[str, float] = {}
        self._finished: dict[str, dict] = {}  # sid -> the last progress of a decoder reclaimed
        # places by kind and last use, in Redis: caps hold across the pool's gateways (stream_caps.py)
        self.slots = StreamSlots(self.store.client, prefix, self.pool.pool_id, stream_caps)

    # -- streams --------------------------------------------------------------------------------
    async def start_stream(
        self,
        source: str,
        *,
        fps: float = 1.0,
        carriers: str = DEFAULT_CARRIERS,
        sid: str | None = None,
        decode: bool = True,
        retention: dict | None = None,
    ) -> StreamInfo:
        """Open a stream; ``source`` is "push" (frames come from push_frame) or a file path / URL that
        a DecoderActor starts reading at once (unless ``decode`` is off: ingest_ranges feeds it).

        ``retention``: Retention fields for this stream, each at most the server's (``live_retention``);
        live and push streams get the server's policy where a field is not given, files keep all.

        The info carries ``stream_key``, the owner key, given only here (``owns`` checks it); None
        when ``sid`` names a stream that already has one."""
        if not 0 < fps <= 30:
            raise UserError(f"fps must be in (0, 30], got {fps:g}", code="bad_request")
        live_url = source != "push" and await asyncio.to_thread(self._check_source, source) is True
        live = source == "push" or live_url
        policy = self._retention(retention or {}) if live else None
        sid = sid or new_sid()  # named here, so it is placed before it exists
        took = False
        if source == "push" or decode:  # what holds a window or a decoder counts (stream_caps.py)
            kind = "push" if source == "push" else "live" if live_url else "file"
            took = await asyncio.to_thread(self.slots.take, sid, kind)
        try:
            info = await self.router.call(sid, "open", sid, source, fps, carriers, policy)
            key, digest = new_key()  # the creator's key to write to the stream (memory/owner_keys.py)
            kept = await asyncio.to_thread(self.store.set_key_hash, sid, digest)
            self._streams.add(sid)
            if source == "push" or (live_url and decode):  # released when nobody uses it
                self._touch(sid)
            if source != "push" and decode and sid not in self._decoders:
                decoder = DecoderActor.remote()
                ref = decoder.run.remote(self.pool, sid, source, fps, 8, info["last_pts"])
                self._decoders[sid] = (decoder, ref)
        except BaseException:
            # refused (bad carriers, ...): no record for a stream that is not
            await asyncio.to_thread(self.pool.release, sid)
            if took:
                await asyncio.to_thread(self.slots.give_back, sid)
            raise
        return StreamInfo.of(info, stream_key=key if kept else None)

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

    async def push_frame(
        self, sid: str, pts: float, image: np.ndarray, *, on_call: Callable[[float], None] | None = None
    ) -> PushResult:
        """Append one pushed frame; returns once it is encoded (see PushDelivery.push): the wait is
        the backpressure, and holds no thread."""
        await self._require_stream(sid)
        result = await self.delivery.push(sid, pts, image, on_call=on_call)
        return PushResult(result.get("last_pts"), tuple(ClosedScene.of(c) for c in result.get("closed", [])))

    async def drop_unsent(self, sid: str, after: float | None) -> None:
        """The client was told to send the frames after ``after`` again: drop their copies."""
        await self.delivery.drop_unsent(sid, after)

    def _touch(self, sid: str) -> None:
        self._touched[sid] = time.monotonic()

    async def ingest_file(
        self,
        source: str,
        *,
        fps: float,
        carriers: str,
        on_progress: Callable[[float], None] | None = None,
        parts: int | None = None,
    ) -> tuple[str, bool]:
        """Encode a video file into memory unless an earlier run already did (bulk ingest:
        workers/bulk_ingest.py); (stream id, whether the memory was reused)."""
        return await bulk_ingest.ingest_file(
            self, source, fps=fps, carriers=carriers, on_progress=on_progress, parts=parts
        )

    async def ingest_ranges(
        self,
        source: str,
        sid: str,
        *,
        duration: float,
        fps: float = 1.0,
        parts: int = 2,
        after: float | None = None,
        on_batch: Callable[[float], None] | None = None,
    ) -> int:
        """Encode a file into stream ``sid`` (opened with ``decode`` off) from ``parts`` time ranges
        decoded in parallel, with the memory of one pass (workers/bulk_ingest.py). ``after``
        resumes after the last stored frame; ``on_batch(pts)`` reports progress. The frames encoded."""
        await self._require_stream(sid)
        return await bulk_ingest.ingest_ranges(
            self.router, source, sid, duration=duration, fps=fps, parts=parts, after=after, on_batch=on_batch
        )

    async def progress(self, sid: str) -> Progress:
        """The decoder's progress (file and live URL streams) and the stream's memory; the actors'
        answers are awaited."""
        await self._require_stream(sid)
        decoder = self._decoders.get(sid)
        out = await decoder[0].progress.remote() if decoder else self._finished.get(sid, PUSHED)
        return Progress.of(out, await self.router.info(sid))

    async def end_stream(self, sid: str) -> list[ClosedScene]:
        """Stop its decoder, close the last scene, wait for its captions and write everything to
        Redis; the scenes this closed."""
        await self._require_stream(sid)
        self._streams.discard(sid)
        await self._stop_decoder(sid)
        async with self.delivery.stream_lock(sid):
            return await self._end_locked(sid)

    async def _stop_decoder(self, sid: str) -> None:
        """Stop the stream's DecoderActor, if it has one, and give its process back."""
        decoder = self._decoders.pop(sid, None)
        if decoder is None:
            return
        try:
            await decoder[0].stop.remote()
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(decoder[1].future())), 15)
        except TimeoutError:
            log.warning("decoder of %s did not stop in 15 s; killing it", sid)
        except Exception:  # dead, or its own error (progress shows it): the stream ends all the same
            pass
        with contextlib.suppress(Exception):
            ray.kill(decoder[0])

    async def _end_locked(self, sid: str) -> list[ClosedScene]:
        closed = await self.delivery.replay_lost_frames(sid, locked=True)
        closed += await self.router.call(sid, "end", sid)
        await asyncio.to_thread(self.pool.release, sid)  # closed on its encoder: placed afresh when continued
        self.delivery.forget(sid)  # end flushed everything to Redis
        self._streams.discard(sid)
        self._touched.pop(sid, None)
        self._finished.pop(sid, None)
        await asyncio.to_thread(self.slots.give_back, sid)
        return [ClosedScene.of(c) for c in closed]

    async def attach(self, sid: str) -> StreamInfo:
        """Continue a stream by id (another client's, or one from before a restart)."""
        if not await asyncio.to_thread(self.store.exists, sid):
            raise UnknownStream(f"no stream {sid!r}")
        async with self.delivery.stream_lock(sid):
            # a restarted encoder first gets the frames only its predecessor had
            await self.delivery.replay_lost_frames(sid, locked=True)
            # push, or a file read to its end: opened on an encoder again (a place unless it holds
            # one, here or through another gateway)
            took = sid not in self._decoders and await asyncio.to_thread(self.slots.take, sid, "push")
            reopened = took
            try:
                info = await self.router.call(sid, "attach", sid)
            except BaseException:
                if took:
                    await asyncio.to_thread(self.slots.give_back, sid)
                raise
            self._streams.add(sid)
            if sid not in self._decoders:  # released when idle
                self._touch(sid)
        return StreamInfo.of(info, reopened=reopened)

    async def is_open(self, sid: str) -> bool:
        """Whether ``sid`` is open, here or through another gateway (attaching takes no new place)."""
        return sid in self._streams or await asyncio.to_thread(self.slots.kind, sid) is not None

    async def owns(self, sid: str, key: str | None) -> bool:
        """Whether ``key`` is the owner key ``start_stream`` gave for ``sid`` (one HGET: any gateway
        can check it). UnknownStream for a stream Redis does not have."""

        def stored() -> str | None:
            digest = self.store.key_hash(sid)
            if digest is None and not self.store.exists(sid):
                raise UnknownStream(f"no stream {sid!r}")
            return digest

        return key_matches(await asyncio.to_thread(stored), key)

    async def release_idle(self, idle_s: float, keep: Collection[str] = ()) -> list[str]:
        """End every push stream that got no frame for ``idle_s`` and is not in ``keep`` (streams a
        client is connected to): its last scene closes, everything is written to Redis, and the
        encoder lets go of its device window, lease and writer. ``attach`` continues it later.

        A live URL stream is released the same way (its decoder stops) unless it has watches, which
        run with no client; a file read to its end gives its decoder process back at once.

        A stream's place has one holder (stream_caps.py): the service that opened it, or attached
        it after its holder died, which alone releases it when idle (by its own clock and the last
        use every service's sweep writes to Redis). A place whose holder is gone (a gateway that
        died or stopped) and that nobody used for ``idle_s`` is adopted and released here, so a
        dead gateway's streams do not hold their places and windows for ever."""
        await self._reclaim_decoders()
        now = time.monotonic()
        for sid in keep:  # a watched stream's idle time starts when its last client leaves
            if sid in self._touched:
                self._touched[sid] = now
        idle = [sid for sid, t in self._touched.items() if now - t >= idle_s]
        for sid in [sid for sid in idle if sid in self._decoders]:
            if await asyncio.to_thread(self.store.has_watches, sid):
                idle.remove(sid)  # a camera watched for something keeps decoding with nobody attached
                self._touch(sid)
        used = self._last_used_here()
        used.update(dict.fromkeys(keep, time.time()))  # a client is on it here
        await asyncio.to_thread(self.slots.touch, used)
        before = time.time() - idle_s
        orphans = await asyncio.to_thread(self.slots.orphans, before, [*used, *self._decoders])
        released = []
        for sid in idle + orphans:
            try:
                async with self.delivery.stream_lock(sid):
                    if sid in self._touched:
                        if time.monotonic() - self._touched[sid] < idle_s:
                            continue  # a frame or a client came meanwhile
                        if not await self._to_release(sid, idle_s):
                            continue
                    elif sid not in orphans or not await asyncio.to_thread(self.slots.adopt, sid, before):
                        continue  # ended here meanwhile, or its holder came back, or it was used
                    else:  # held here now: if ending it fails, the next sweep tries again
                        self._touched[sid] = time.monotonic() - idle_s
                    await self._stop_decoder(sid)  # a live URL stream's
                    await self._end_locked(sid)
                released.append(sid)
                log.info("stream %s: no client and no frame for %.0f s; released", sid, idle_s)
            except Exception as exc:  # tried again at the next sweep
                log.warning("stream %s: releasing it failed: %s", sid, exc)
        return released

    def _last_used_here(self) -> dict[str, float]:
        """Each stream's last frame or client here, as unix times (what other services compare)."""
        wall = time.time() - time.monotonic()
        return {sid: wall + t for sid, t in self._touched.items()}

    async def _to_release(self, sid: str, idle_s: float) -> bool:
        """Whether this service, idle on ``sid`` for ``idle_s``, ends it now: it holds its place (or
        adopts it from a holder that died, or it has none) and nobody used it for ``idle_s`` (every
        service's sweep writes its last use). A stream another live service holds is that one's to
        release: forgotten here."""

        def read() -> tuple[str | None, bool, str | None, float | None]:
            holder, alive = self.slots.holder_of(sid)
            return holder, alive, self.slots.kind(sid), self.slots.last_used(sid)

        holder, alive, kind, used = await asyncio.to_thread(read)
        if kind is None:
            return True  # no place (released elsewhere meanwhile): ending it again is harmless
        if holder != self.slots.holder:
            if alive:
                self._touched.pop(sid, None)
                self._streams.discard(sid)
                self.delivery.forget(sid)  # its copies: the holder's clients push it
                return False
            return await asyncio.to_thread(self.slots.adopt, sid, time.time() - idle_s)
        return used is None or time.time() - used >= idle_s

    async def _reclaim_decoders(self) -> None:
        """Stop the decoder processes whose source has ended (a file read to its end, a source that
        failed): their last progress is kept for ``progress``."""
        decoders = dict(self._decoders)
        if not decoders:
            return
        refs = [ref for _, ref in decoders.values()]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)  # timeout 0: never blocks
        for sid, (actor, ref) in decoders.items():
            if ref not in done:
                continue
            try:
                final = await ref
            except Exception as exc:  # the decoder died for good: its stream shows the error
                final = {"status": "error", "error": {"code": "source_error", "message": str(exc)}}
            final.pop("closed", None)
            # a file read to its end ended its stream itself; any other (a live source, a file that
            # failed midway) is still open on its encoder: released when idle, like a push stream
            ended = await asyncio.to_thread(self.slots.kind, sid) != "live" and final.get("status") == "done"
            if self._decoders.get(sid) != (actor, ref):
                continue  # ended or restarted meanwhile
            del self._decoders[sid]
            self._finished[sid] = final
            while len(self._finished) > FINISHED_KEPT:  # the oldest first (insertion order)
                self._finished.pop(next(iter(self._finished)))
            if ended:
                self._streams.discard(sid)
                await asyncio.to_thread(self.slots.give_back, sid)
            else:
                self._touch(sid)
            ray.kill(actor)

    async def _require_stream(self, sid: str) -> None:
        """Raise UnknownStream unless ``sid`` is open here or stored."""
        if sid not in self._streams and not await asyncio.to_thread(self.store.exists, sid):
            raise UnknownStream(f"no stream {sid!r}")

    @property
    def encoder(self) -> ray.actor.ActorHandle:
        """The first encoder (the only one unless ``encoders`` asked for more)."""
        return self.pool.first()

    # -- questions and captions -------------------------------------------------------------------
    def ask(self, sid: str, question: str, **options) -> AsyncIterator[AnswerEvent]:
        """Stream an answer from the stream's encoder: AnswerDelta events, then one AnswerDone or
        AnswerError (``options``: Questions.ask's, from ``qid`` and the anchors to ``policy``)."""
        return self.questions.ask(sid, question, **options)

    async def cancel(self, qid: str, timeout: float = 5.0) -> bool:
        """Stop question ``qid`` on whichever encoder runs it; False if none does."""
        return await self.questions.cancel(qid, timeout)

    async def caption_missing(self, sid: str) -> int:
        await self._require_stream(sid)
        return await self.router.call(sid, "caption_missing", sid, place=False)

    # -- observation (Redis reads, each in a thread) -----------------------------------------------
    async def scenes(self, sid: str) -> list[SceneRow]:
        await self._require_stream(sid)
        rows = await asyncio.to_thread(self.store.scenes, sid)
        return [SceneRow(s.index, s.start, s.end, s.caption, s.closed) for s in rows]

    async def search(self, text: str, streams: Collection[str] | None = None, limit: int = 10) -> list:
        """Scenes of every stored stream (or ``streams``) matching ``text``, best first: SearchHits
        (qa/search.py), read from Redis alone, no model pass."""
        from scenekv.qa.search import search

        wanted = list(streams) if streams is not None else None
        return await asyncio.to_thread(search, self.store, text, wanted, limit)

    # -- watches ----------------------------------------------------------------------------------
    async def add_watch(
        self,
        sid: str,
        watch_id: str,
        text: str,
        *,
        webhook: str | None = None,
        cooldown_s: float = 0.0,
        webhook_allow: tuple[str, ...] = (),
    ) -> bool:
        """Store a watch on ``sid`` (memory/watches.py): the encoder evaluates it on every frame read
        from now on; ``webhook_allow``: the operator's host rules its webhook is delivered under.
        False when a watch with this id and the same settings is there already; WatchRefused for an
        id taken by another watch or a stream at its limit; a text that names nothing is refused."""
        from scenekv.memory.watches import new_watch
        from scenekv.qa.watch_detector import watch_terms

        await self._require_stream(sid)
        if not watch_terms(text):
            raise UserError(f"{text!r} names nothing to watch for", code="bad_request")
        watch = new_watch(watch_id, text, webhook=webhook, cooldown_s=cooldown_s, webhook_allow=webhook_allow)
        return await asyncio.to_thread(self.store.add_watch, sid, watch)

    async def remove_watch(self, sid: str, watch_id: str) -> bool:
        await self._require_stream(sid)
        return await asyncio.to_thread(self.store.remove_watch, sid, watch_id)

    async def watches(self, sid: str) -> list:
        """The stream's watches (memory.watches.Watch; ``as_message()`` is what clients see: no
        webhook URL)."""
        return await asyncio.to_thread(self.store.watches, sid)

    async def watch_hits(self, sid: str) -> list:
        """The stream's kept hits (memory.watches.WatchHit), in time order."""
        return await asyncio.to_thread(self.store.watch_hits, sid)

    async def caption_track(self, sid: str, fmt: str) -> str:
        """The stream's scene captions as a VTT / SRT / JSONL file's text, as `scenekv caption` writes."""
        from scenekv.qa.captions import render_captions, stream_cues

        await self._require_stream(sid)
        return await asyncio.to_thread(lambda: render_captions(stream_cues(self.store, sid), fmt))

    async def encoder_stats(self, timeout: float = 2.0) -> list[dict]:
        """One dict per encoder (Runtime.encoder_stats)."""
        return await asyncio.to_thread(self.runtime.encoder_stats, timeout)

    async def health(self) -> dict:
        return await asyncio.to_thread(self.runtime.health)

    async def _give_up_places(self) -> None:
        """A private pool's places go (its encoders detach every stream); a shared pool's streams
        stay open, their last use written, for other services to adopt when idle."""
        with contextlib.suppress(Exception):  # Redis may be gone: the records expire by themselves
            if self.pool.shared:
                await asyncio.wait_for(asyncio.to_thread(self.slots.touch, self._last_used_here()), 5.0)
            else:
                await asyncio.wait_for(asyncio.to_thread(self.slots.clear), 5.0)
        await asyncio.to_thread(self.slots.close)

    async def shutdown(self, timeout: float = 60.0) -> None:
        """Stop decoders, flush and detach every stream (each resumes on attach), stop Ray and a
        private Redis, all within ``timeout``: a step that does not answer in time is skipped and
        its actor killed (what Redis acknowledged stays; a hung encoder's window is lost)."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        decoders = list(self._decoders.values())
        self._decoders.clear()
        try:
            for decoder, _ in decoders:
                with contextlib.suppress(Exception):
                    decoder.stop.remote()
            if decoders:
                runs = [asyncio.wrap_future(run.future()) for _, run in decoders]
                await asyncio.wait(runs, timeout=min(15.0, left()))
            # a third of what is left: a hung encoder must not take the detach's time too
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.delivery.replay_all_lost_frames(), left() / 3)
        finally:
            await self._give_up_places()
        # Blocking, on the loop's own thread, on purpose: nothing else on the loop runs meanwhile (a
        # push retrying on a killed encoder would race Ray's shutdown)
        self.runtime.shutdown(left, also_kill=[d for d, _ in decoders])
