"""Per-stream state shared by every connection watching a stream, and the fan-out of its events.

One reader per gateway reads the event logs of every watched stream with one blocking XREAD on
redis.asyncio (memory/event_feed.py), and one task per stream (not per client) awaits its progress
from the actors a second: no thread is held per watched stream or per viewer. Scene messages are
de-duplicated here: a scene arrives from the pushing connection's encode result (fast, captioned)
and again from the event log (which also carries scenes closed by other gateways or decoders).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from scenekv.workers.results import ClosedScene, Progress

from .metrics import GatewayMetrics
from .protocol import encode, error_message
from .watches import watch_event

if TYPE_CHECKING:
    from .context import Service

log = logging.getLogger(__name__)

EVENTS_BLOCK_MS = 500


class Subscriber(Protocol):
    def deliver(self, message: str) -> None: ...

    def deliver_watch(self, message: str) -> None:
        """A watch message: held back while the subscriber sends its snapshot of the stream's watches."""
        ...


@dataclass
class StreamState:
    sid: str
    push: bool
    last_pts: float | None = None  # newest pts accepted from a client (queued), for ordering checks
    encoded_pts: float | None = None  # newest pts the encoder has taken
    # set when a frame was refused because the encoder was away: later frames are refused too
    # until the client re-sends from here (go-back-N), so none lands before a refused one
    refused_from: float | None = None
    frames: int = 0  # frames this gateway pushed into the stream
    lag_s: float = 0.0  # receive -> encoded, newest pushed frame
    ended: bool = False
    subscribers: set = field(default_factory=set)
    scenes: dict[int, dict] = field(default_factory=dict)  # scene_id -> {start, end}
    captions_sent: dict[int, str | None] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task] = field(default_factory=list)
    last_progress: dict | None = None
    decoder_error_sent: bool = False
    encoder_down_at: float | None = None  # when a pusher last found the stream's encoder away
    figures: tuple[float, float, float] = (0.0, 0.0, 0.0)  # lag_s, memory bytes, frames: /metrics

    def encoder_down(self) -> None:
        self.encoder_down_at = time.monotonic()

    def encoder_back(self) -> None:
        self.encoder_down_at = None

    def encoder_away(self) -> bool:
        """A pusher found this stream's encoder dead or restarting within the last 3 s (pushers
        retry every 2 s at most while it is away, so this stays true until it is back, then
        expires). Per stream: with several encoders, one's restart leaves the others' streams be."""
        return self.encoder_down_at is not None and time.monotonic() - self.encoder_down_at < 3.0

    def fan_out(self, message: str) -> None:
        for sub in list(self.subscribers):
            sub.deliver(message)

    def fan_out_watch(self, message: str) -> None:
        for sub in list(self.subscribers):
            sub.deliver_watch(message)

    def publish_scene(self, scene: ClosedScene) -> None:
        """Send ``scene.closed`` unless every subscriber already has this scene with this caption."""
        idx = scene.scene_id
        caption = scene.caption  # None: not captioned yet; "": the model wrote nothing
        known = self.scenes.setdefault(idx, {})
        for key in ("start", "end", "frames"):
            if getattr(scene, key) is not None:
                known[key] = getattr(scene, key)
        if idx in self.captions_sent and (caption is None or caption == self.captions_sent[idx]):
            return
        self.captions_sent[idx] = caption
        self.fan_out(
            encode(
                "scene.closed",
                scene_id=idx,
                start=known.get("start"),
                end=known.get("end"),
                frames=known.get("frames"),
                caption=caption,
            )
        )


class StreamRegistry:
    """Streams watched by this gateway; a stream's watcher runs while it has subscribers."""

    def __init__(self, service: Service, metrics: GatewayMetrics, progress_interval_s: float = 1.0) -> None:
        self.service, self.metrics = service, metrics
        self.progress_interval_s = progress_interval_s
        self.streams: dict[str, StreamState] = {}
        from scenekv.memory.event_feed import EventFeed  # here: importing web/ stays light (no torch)

        self.feed = EventFeed(service.redis_url, service.prefix)
        self.cursors: dict[str, str] = {}  # sid -> id of the last event read (streams that are ready)
        self._reader: asyncio.Task | None = None
        metrics.lag.set_function(lambda: max((st.figures[0] for st in self._states()), default=0.0))
        metrics.memory.set_function(lambda: sum(st.figures[1] for st in self._states()))
        metrics.stream_frames.set_function(lambda: sum(st.figures[2] for st in self._states()))

    def _states(self) -> list[StreamState]:
        return list(self.streams.values())  # a copy: a scrape may run while the loop changes it

    async def subscribe(
        self, sid: str, sub: Subscriber, *, push: bool, last_pts: float | None, fresh: bool
    ) -> StreamState:
        """Join ``sid``'s fan-out; returns once events after this moment are sure to be delivered."""
        st = self.streams.get(sid)
        if st is None:
            st = StreamState(sid=sid, push=push, last_pts=last_pts, encoded_pts=last_pts)
            self.streams[sid] = st
            st.tasks = [
                asyncio.create_task(self._start(st, fresh), name=f"events:{sid}"),
                asyncio.create_task(self._progress(st), name=f"progress:{sid}"),
            ]
            self.metrics.streams.set(len(self.streams))
        elif last_pts is not None and (st.last_pts is None or last_pts > st.last_pts):
            st.last_pts = last_pts
        if self._reader is None or self._reader.done():  # one reader for every watched stream
            self._reader = asyncio.create_task(self._read_events(), name="events")
        st.ended = False
        st.subscribers.add(sub)
        await st.ready.wait()
        return st

    def unsubscribe(self, st: StreamState, sub: Subscriber) -> None:
        st.subscribers.discard(sub)
        if st.subscribers or self.streams.get(st.sid) is not st:
            return
        for task in st.tasks:
            task.cancel()
        del self.streams[st.sid]
        self.cursors.pop(st.sid, None)
        self.metrics.streams.set(len(self.streams))

    async def close(self) -> None:
        tasks = [t for st in self.streams.values() for t in st.tasks]
        if self._reader is not None:
            tasks.append(self._reader)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.streams.clear()
        self.cursors.clear()
        await self.feed.close()

    # -- watchers ---------------------------------------------------------------------------------
    async def _start(self, st: StreamState, fresh: bool) -> None:
        """Where the stream's events start for this gateway: its whole log for a fresh stream; after
        the backlog for an attached one (its client gets a scenes snapshot instead)."""
        after = "0-0"
        try:
            if not fresh:
                for _, eid, kind, data in await self.feed.backlog(st.sid):
                    after = eid
                    if kind == "scene.closed":
                        st.scenes[int(data["scene"])] = {"start": data.get("start"), "end": data.get("end")}
        except Exception:
            log.exception("reading the event log of %s", st.sid)
        if self.streams.get(st.sid) is st:
            self.cursors[st.sid] = after
        st.ready.set()

    async def _read_events(self) -> None:
        """The one reader: every ready stream's new events, dispatched to its state. A stream that
        becomes ready while a read is waiting joins the next read; its cursor was fixed when it
        became ready, so nothing written since is missed (it arrives within one block)."""
        while True:
            try:
                events = await self.feed.read(dict(self.cursors), EVENTS_BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: try again (the streams keep their cursors)
                log.warning("reading stream events: %s", exc)
                await asyncio.sleep(1.0)
                continue
            for sid, eid, kind, data in events:
                st = self.streams.get(sid)
                if st is None or not _newer(eid, self.cursors.get(sid)):
                    continue  # left meanwhile, or re-joined with a later cursor
                self.cursors[sid] = eid
                try:  # one malformed event is skipped; the reader serves every stream
                    self._on_event(st, kind, data)
                except Exception:
                    log.exception("event %s of %s", eid, sid)

    def _on_event(self, st: StreamState, kind: str, data: dict) -> None:
        if kind == "scene.closed":
            st.publish_scene(replace(ClosedScene.of(data), caption=None))
        elif kind == "scene.captioned":
            st.publish_scene(ClosedScene(int(data["scene"]), caption=data.get("caption")))
        elif kind.startswith("watch.") and (message := watch_event(kind, data)) is not None:
            st.fan_out_watch(message)
        elif kind == "stream.ended" and not st.ended:
            st.ended = True
            st.fan_out(encode("session.ended", stream_id=st.sid))

    async def _progress(self, st: StreamState) -> None:
        await st.ready.wait()
        while True:
            await asyncio.sleep(self.progress_interval_s)
            try:
                p = await self.service.progress(st.sid)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("progress of %s: %s", st.sid, exc)
                continue
            self._on_progress(st, p)

    def _on_progress(self, st: StreamState, p: Progress) -> None:
        if st.push:
            frames, pts, lag = st.frames, st.encoded_pts, st.lag_s
        else:
            frames, pts, lag = p.frames, p.pts, p.lag_s
        # a file read to its end ends its stream itself (its last scene closes): it stays "done"
        status = "ended" if st.ended and p.status != "done" else p.status
        payload = {
            "frames": frames,
            "pts": pts,
            "lag_s": round(float(lag or 0.0), 3),
            "memory_bytes": p.memory_bytes,
            "chunks": p.chunks,
            "scenes": p.scenes,
            "dropped": p.dropped,
            "status": status,
        }
        st.figures = (payload["lag_s"], float(p.memory_bytes or 0), float(frames or 0))
        error = p.error
        if p.status == "error" and error and not st.decoder_error_sent:
            st.decoder_error_sent = True
            st.fan_out(
                error_message(error.get("code", "source_error"), error.get("message", "source failed"))
            )
        if payload != st.last_progress:
            st.last_progress = payload
            st.fan_out(encode("ingest.progress", **payload))


def _newer(eid: str, cursor: str | None) -> bool:
    """Whether event ``eid`` comes after ``cursor`` (None: the stream is not being read)."""
    if cursor is None:
        return False
    a, b = (tuple(int(x) for x in i.split("-")) for i in (eid, cursor))
    return a > b
