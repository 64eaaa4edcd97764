"""One WebSocket connection: reads client messages, pushes frames, streams answers, relays events.

Three kinds of work run side by side so none blocks another: the reader (parses and validates every
message, answers errors at once), the frame pusher (decodes and encodes frames in order; its bounded
queue stops the reader when the encoder is behind: backpressure down to TCP), and one task per
question. Everything the client receives goes through one outbox, in order, so a slow client never
stalls the stream's other viewers. Blocking service calls run in the gateway's thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from scenekv.errors import UserError, unwrap
from scenekv.workers.errors import EncoderUnavailable
from scenekv.workers.results import AnswerDelta, AnswerDone

from . import protocol as P
from .imaging import decode_frame
from .protocol import ProtocolError, encode, error_message
from .ratelimit import TokenBucket
from .search import handle_search
from .shown_source import shown_source as shown
from .sources import resolve_source
from .streams import StreamState
from .watches import handle_watch_add, handle_watch_remove, send_watches

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from .context import GatewayContext

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 2000  # messages; a client this far behind is not reading and gets disconnected
HISTORY_PAGE = OUTBOX_LIMIT // 2  # a stream's past scenes queued at once for a client that attaches
HISTORY_STALL_S = 30.0  # a client that reads none of its history this long is not reading


@dataclass
class _Question:
    qid: str  # unique across connections (the service cancels by this id)
    cancelled: bool = False
    confirmed: bool = False


class Connection:
    def __init__(self, ws: ServerConnection, ctx: GatewayContext) -> None:
        self.ws, self.ctx = ws, ctx
        self.service, self.cfg, self.metrics = ctx.service, ctx.config, ctx.metrics
        self.id = uuid.uuid4().hex[:10]
        self.outbox: asyncio.Queue[tuple[str, float]] = asyncio.Queue(OUTBOX_LIMIT)  # (message, queued at)
        self._arrived = 0.0  # when the message being handled arrived (perf_counter)
        # (stream, frame, received (monotonic), seconds the gateway took to read it)
        self.frames: asyncio.Queue[tuple[StreamState, P.FrameAppend, float, float]] = asyncio.Queue(
            self.cfg.frame_queue
        )
        self.frames_queued = 0
        self.frames_done = 0
        self._frames_cond = asyncio.Condition()
        self.stream: StreamState | None = None
        self.owner = False  # holds the stream's key: may push, end it, add and remove watches
        self.questions: dict[str, _Question] = {}
        self.frame_bucket = TokenBucket(self.cfg.frames_per_s, max(1.0, 2 * self.cfg.frames_per_s))
        self.message_bucket = TokenBucket(self.cfg.messages_per_s, max(1.0, 3 * self.cfg.messages_per_s))
        self.start_bucket = TokenBucket(self.cfg.starts_per_min / 60.0, 10.0)
        self.streams_started = 0
        self.question_bucket = TokenBucket(
            self.cfg.questions_per_min / 60.0, min(10.0, max(1.0, self.cfg.questions_per_min))
        )
        self._tasks: set[asyncio.Task] = set()
        self.watches_added: dict[str, set[str]] = {}  # stream -> ids of watches this connection added
        # live watch messages that arrive while the stream's watches are being sent on attach: sent
        # after them, so a watch removed meanwhile is not shown again by the older snapshot
        self._watch_held: list[str] | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    async def run(self) -> None:
        writer = asyncio.create_task(self._write_loop(), name=f"writer:{self.id}")
        pusher = asyncio.create_task(self._push_loop(), name=f"pusher:{self.id}")
        try:
            async for message in self.ws:
                await self._handle(message)
        except ConnectionClosed:
            pass
        finally:
            await self._cleanup(writer, pusher)

    async def _cleanup(self, writer: asyncio.Task, pusher: asyncio.Task) -> None:
        for task in (pusher, *self._tasks):
            task.cancel()
        for q in self.questions.values():  # nobody will read these answers: stop spending compute
            q.cancelled = True
            asyncio.ensure_future(self.service.cancel(q.qid))  # after the loop above: runs
        self.metrics.frame_queue.dec(self.frames.qsize())
        if self.stream is not None:
            self.ctx.registry.unsubscribe(self.stream, self)
            self.stream = None
        writer.cancel()
        self.metrics.outbox.dec(self.outbox.qsize())

    def busy(self) -> bool:
        """Work a drain should wait for: queued frames or answers still streaming."""
        return bool(self.questions) or self.frames_done < self.frames_queued

    def go_away(self, time_left_ms: int) -> None:
        self.deliver(encode("go_away", time_left_ms=int(time_left_ms)))

    # -- output -----------------------------------------------------------------------------------
    def deliver(self, message: str) -> None:
        try:
            self.outbox.put_nowait((message, time.perf_counter()))
            self.metrics.outbox.inc()
        except asyncio.QueueFull:
            log.warning("connection %s is not reading; closing it", self.id)
            self._spawn(self.ws.close(1008, "client too slow"))

    def deliver_watch(self, message: str) -> None:
        if self._watch_held is not None:
            self._watch_held.append(message)
        else:
            self.deliver(message)

    def send_error(self, code: str, message: str, id: str | None = None, **extra) -> None:
        self.metrics.errors.labels(code=code).inc()
        self.deliver(error_message(code, message, id, **extra))

    async def _write_loop(self) -> None:
        while True:
            message, queued = await self.outbox.get()
            self.metrics.outbox.dec()
            try:
                await self.ws.send(message)
            except ConnectionClosed:
                return
            self.metrics.gateway_send.observe(time.perf_counter() - queued)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- input ------------------------------------------------------------------------------------
    async def _handle(self, message: str | bytes) -> None:
        self._arrived = time.perf_counter()  # messages are handled one at a time, in order
        try:
            if isinstance(message, bytes | bytearray | memoryview):
                msg = P.parse_binary(bytes(message), max_frame_bytes=self.cfg.max_frame_bytes)
            else:
                if not self.message_bucket.take():  # before any parsing: a flood costs nothing
                    raise ProtocolError(P.RATE_LIMITED, f"more than {self.cfg.messages_per_s:g} messages/s")
                msg = P.parse_text(
                    message, max_text_bytes=self.cfg.max_text_bytes, max_frame_bytes=self.cfg.max_frame_bytes
                )
            await self._dispatch(msg)
        except ProtocolError as exc:
            self.send_error(exc.code, str(exc), exc.id, **exc.extra)
        except UserError as exc:
            self.send_error(*user_error(exc), **retry_hint(exc))
        except Exception as exc:
            log.exception("connection %s: handling a message failed", self.id)
            self.send_error(P.INTERNAL, f"internal error: {type(exc).__name__}")

    async def _dispatch(self, msg: P.ClientMessage) -> None:
        if isinstance(msg, P.FrameAppend):
            await self._frame(msg)
        elif isinstance(msg, P.QuestionAsk):
            await self._ask(msg)
        elif isinstance(msg, P.QuestionCancel):
            await self._cancel(msg)
        elif isinstance(msg, P.SessionStart):
            await self._start(msg)
        elif isinstance(msg, P.SessionEnd):
            await self._end()
        elif isinstance(msg, P.SearchRequest):
            await handle_search(self, msg)
        elif isinstance(msg, P.WatchAdd):
            await handle_watch_add(self, msg)
        elif isinstance(msg, P.WatchRemove):
            await handle_watch_remove(self, msg)

    def _check_open(self) -> None:
        if self.ctx.draining:
            raise ProtocolError(
                P.GOING_AWAY, "the server is shutting down; reconnect with your stream_id (and stream_key)"
            )

    # -- session.start / session.end --------------------------------------------------------------
    async def _start(self, msg: P.SessionStart) -> None:
        self._check_open()
        if not self.start_bucket.take():
            raise ProtocolError(P.RATE_LIMITED, f"more than {self.cfg.starts_per_min:g} session.start/min")
        if self.streams_started >= self.cfg.max_streams_per_connection and (
            msg.stream_id is None or not await self.service.is_open(msg.stream_id)
        ):  # new streams, and streams an attach would open again, count alike
            raise ProtocolError(
                P.TOO_MANY_STREAMS,
                f"a connection may open {self.cfg.max_streams_per_connection} streams (new or reopened)",
            )
        if msg.stream_id is not None:
            owner = False
            if msg.stream_key is not None:  # a wrong key is an error, not a quiet read-only attach
                owner = await self.service.owns(msg.stream_id, msg.stream_key)
                if not owner:
                    raise ProtocolError(P.NOT_OWNER, f"that is not the stream_key of {msg.stream_id!r}")
            info = await self.service.attach(msg.stream_id)
            self.streams_started += info.reopened
            push = info.pushed
            shown_source = shown(info.source, self.cfg.media_root and self.cfg.media_root.resolve())
        else:
            assert msg.source is not None
            source = await asyncio.to_thread(
                resolve_source, msg.source, self.cfg.media_root, self.cfg.allowed_source_hosts
            )
            info = await self.service.start_stream(
                source,
                fps=msg.fps or self.cfg.fps,
                carriers=msg.carriers or self.cfg.carriers,
                retention=msg.retention,
            )
            push = source == "push"
            shown_source = msg.source  # never echo the server-side path of a file:NAME source
            owner = True
            self.streams_started += 1
        await self._leave_stream()
        sid = info.stream_id
        self.owner = owner
        self.deliver(
            encode(
                "session.started",
                stream_id=sid,
                stream_key=info.stream_key if msg.stream_id is None else None,
                owner=owner,
                model=info.model,
                random_weights=info.random_weights,
                world_only=info.world_only,
                fps=info.fps,
                carriers=info.carriers,
                last_pts=info.last_pts,
                source=shown_source,
            )
        )
        fresh = msg.stream_id is None
        self._watch_held = None if fresh else []
        try:
            self.stream = await self.ctx.registry.subscribe(
                sid, self, push=push, last_pts=info.last_pts, fresh=fresh
            )
            if not fresh:  # a client that attaches sees the scenes closed so far
                await self._send_history(sid)
                await send_watches(self, sid)  # its watches and their hits so far
        finally:  # then the live watch messages that came meanwhile
            held, self._watch_held = self._watch_held or [], None
            for message in held:
                self.deliver(message)

    async def _send_history(self, sid: str) -> None:
        """The stream's closed scenes, paced by the client's reading: never more than half the
        outbox at a time, so a stream with any number of scenes can be attached to (a client that
        stops reading meanwhile is cut off by the outbox rule, as for live messages)."""
        for scene in await self.service.scenes(sid):
            if not scene.closed:
                continue
            stalled = time.monotonic() + HISTORY_STALL_S
            while self.outbox.qsize() >= HISTORY_PAGE:
                if self.ws.state is not State.OPEN or time.monotonic() > stalled:
                    self._spawn(self.ws.close(1008, "client too slow"))
                    return
                await asyncio.sleep(0.01)
            self.deliver(
                encode(
                    "scene.closed",
                    scene_id=scene.scene_id,
                    start=scene.start,
                    end=scene.end,
                    caption=scene.caption or None,
                )
            )

    async def _leave_stream(self) -> None:
        if self.stream is not None:
            await self._frames_flushed(self.frames_queued)
            self.ctx.registry.unsubscribe(self.stream, self)
            self.stream = None

    def require_owner(self, id: str | None = None) -> StreamState:
        """The session's stream, if this connection holds its key (pushing, ending, watches)."""
        st = self._session(id)
        if not self.owner:
            raise ProtocolError(
                P.NOT_OWNER,
                "only the stream's owner may do this: session.start {stream_id, stream_key}",
                id=id,
            )
        return st

    async def _end(self) -> None:
        st = self.require_owner()
        await self._frames_flushed(self.frames_queued)
        closed = await self.service.end_stream(st.sid)
        for scene in closed:
            st.publish_scene(scene)
        if not st.ended:
            st.ended = True
            st.fan_out(encode("session.ended", stream_id=st.sid))

    def _session(self, id: str | None = None) -> StreamState:
        if self.stream is None:
            raise ProtocolError(P.NO_SESSION, "send session.start first", id=id)
        return self.stream

    # -- frames -----------------------------------------------------------------------------------
    async def _frame(self, frame: P.FrameAppend) -> None:
        if not self.frame_bucket.take():
            self.metrics.frames_dropped.labels(reason="rate_limited").inc()
            raise ProtocolError(
                P.RATE_LIMITED, f"more than {self.cfg.frames_per_s:g} frames/s", pts=frame.pts
            )
        self._check_open()
        st = self._session()
        if not self.owner:
            self.metrics.frames_dropped.labels(reason=P.NOT_OWNER).inc()
            raise ProtocolError(
                P.NOT_OWNER,
                "frames need the stream's stream_key (session.start {stream_id, stream_key})",
                pts=frame.pts,
            )
        if not st.push:
            raise ProtocolError(P.BAD_REQUEST, "this stream reads its own source; frames are not accepted")
        if st.ended:
            raise ProtocolError(
                P.NO_SESSION,
                "the stream has ended; session.start {stream_id, stream_key} continues it",
                pts=frame.pts,
            )
        item = (st, frame, time.monotonic(), time.perf_counter() - self._arrived)
        while True:
            # The checks and the put happen in one step of the event loop: a refusal of the queue
            # (_refuse_queued) between a wait and the put cannot let this frame jump ahead of it.
            if st.refused_from is not None and frame.pts > st.refused_from:
                raise self._refusal(frame.pts, st.refused_from)
            if st.last_pts is not None and frame.pts <= st.last_pts:
                self.metrics.frames_dropped.labels(reason="bad_pts").inc()
                raise ProtocolError(
                    P.BAD_PTS,
                    f"pts {frame.pts:g} is not after the previous frame ({st.last_pts:g})",
                    pts=frame.pts,
                )
            if not self.frames.full():
                self.frames.put_nowait(item)
                break
            if st.encoder_away():  # never block the reader then: keepalive must be answered
                st.refused_from = frame.pts
                raise self._refusal(frame.pts, frame.pts)
            await asyncio.sleep(0.02)  # the encoder is busy: wait for room (backpressure)
        st.refused_from = None  # the client went back to the first refused frame (or before it)
        st.last_pts = frame.pts
        self.frames_queued += 1
        self.metrics.frame_queue.inc()

    def _refusal(self, pts: float, resend_from: float) -> ProtocolError:
        self.metrics.frames_dropped.labels(reason=P.ENCODER_UNAVAILABLE).inc()
        return ProtocolError(
            P.ENCODER_UNAVAILABLE,
            f"the encoder is restarting; send the frames from pts {resend_from:g} again",
            pts=pts,
            resend_from=resend_from,
            retry_after_ms=self.cfg.retry_after_ms,
        )

    async def _push_loop(self) -> None:
        while True:
            st, frame, received, parsed_s = await self.frames.get()
            dequeued = time.perf_counter()
            self.metrics.frame_queue.dec()

            def called(at: float, parsed_s: float = parsed_s, dequeued: float = dequeued) -> None:
                """The gateway's own share: reading the message, then dequeue -> the encoder call
                (decode, thread hop); the wait in the queue is the encoder's backpressure."""
                self.metrics.gateway_frame.observe(parsed_s + at - dequeued)

            try:
                rgb = await decode_frame(frame.image)  # its own bounded pool, never this loop
                t0 = time.perf_counter()
                result = await self._push_waiting(st, frame, rgb, called)
                if result is None:  # the encoder stayed away: this and every queued frame refused
                    await self._refuse_queued(st, frame)
                    continue
                self.metrics.encode_seconds.observe(time.perf_counter() - t0)
                self.metrics.frames.inc()
                st.frames += 1
                st.encoded_pts = frame.pts
                st.lag_s = time.monotonic() - received
                for scene in result.closed:
                    st.publish_scene(scene)
            except UserError as exc:
                self._allow_resend(st, frame.pts)
                code, message = user_error(exc)
                self.metrics.frames_dropped.labels(reason=code).inc()
                self.send_error(code, message, pts=frame.pts)
            except Exception as exc:
                self._allow_resend(st, frame.pts)
                log.exception("connection %s: pushing frame %.3f failed", self.id, frame.pts)
                self.send_error(P.INTERNAL, f"encoding failed: {type(exc).__name__}", pts=frame.pts)
            finally:
                async with self._frames_cond:
                    self.frames_done += 1
                    self._frames_cond.notify_all()

    async def _push_waiting(self, st: StreamState, frame: P.FrameAppend, rgb, called=None) -> dict | None:
        """push_frame, retried while the encoder restarts (the frame stays queued, in order);
        None once it has been away for ``encoder_wait_s``. ``called(t)``: when the first try began."""
        deadline = time.monotonic() + self.cfg.encoder_wait_s
        delay = 0.2

        while True:
            try:  # awaited: a frame waiting for its vision batch holds no thread
                result = await self.service.push_frame(st.sid, frame.pts, rgb, on_call=called)
                called = None
                st.encoder_back()
                return result
            except EncoderUnavailable:
                called = None  # the gateway's share was observed at the first try
                st.encoder_down()
                if time.monotonic() > deadline:
                    return None
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def _refuse_queued(self, st: StreamState, first: P.FrameAppend) -> None:
        """Refuse ``first`` and every frame queued after it: the client re-sends from ``first``."""
        refused = [first]
        while not self.frames.empty():
            refused.append(self.frames.get_nowait()[1])
            self.metrics.frame_queue.dec()
            self.frames_done += 1
        st.refused_from = first.pts
        st.last_pts = st.encoded_pts
        for frame in refused:
            exc = self._refusal(frame.pts, first.pts)
            self.send_error(exc.code, str(exc), None, **exc.extra)
        # the client re-sends these: their copies must not be replayed as well (before the next push)
        await self.service.drop_unsent(st.sid, st.encoded_pts)

    def _allow_resend(self, st: StreamState, pts: float) -> None:
        """A frame that failed does not use up its pts: unless newer frames are queued behind it,
        the client may send a frame with the same pts again."""
        if st.last_pts == pts and self.frames.empty():
            st.last_pts = st.encoded_pts

    async def _frames_flushed(self, target: int) -> None:
        """Wait until the first ``target`` frames this connection queued are encoded."""
        async with self._frames_cond:
            await self._frames_cond.wait_for(lambda: self.frames_done >= target)

    # -- questions --------------------------------------------------------------------------------
    async def _ask(self, q: P.QuestionAsk) -> None:
        st = self._session()
        self._check_open()
        if q.id in self.questions:
            raise ProtocolError(P.DUPLICATE_ID, f"question {q.id!r} is still being answered", id=q.id)
        if len(self.questions) >= self.cfg.max_questions_in_flight:
            raise ProtocolError(
                P.RATE_LIMITED, f"at most {self.cfg.max_questions_in_flight} questions at a time", id=q.id
            )
        if not self.question_bucket.take():
            raise ProtocolError(
                P.RATE_LIMITED, f"more than {self.cfg.questions_per_min:g} questions/min", id=q.id
            )
        if st.push:
            has_frames = st.last_pts is not None
        else:
            has_frames = (await self.service.progress(st.sid)).last_pts is not None
        if not has_frames:
            raise ProtocolError(P.NO_FRAMES, "the stream has no frames yet", id=q.id)
        pending = _Question(qid=f"{self.id}:{q.id}")
        self.questions[q.id] = pending
        self.metrics.questions_in_flight.inc()
        self._spawn(self._answer(st, q, pending, self.frames_queued))

    async def _answer(self, st: StreamState, q: P.QuestionAsk, pending: _Question, frames: int) -> None:
        """Stream one answer; the question sees every frame this client sent before it."""
        try:
            await self._frames_flushed(frames)
            answer = self.service.ask(
                st.sid,
                q.text,
                qid=pending.qid,
                at=q.at,
                range_=list(q.range) if q.range else None,
                last=q.last,
                max_tokens=q.max_tokens,
            )
            async for item in answer:  # awaited from Ray as it streams: no thread per answer
                if pending.cancelled and not pending.confirmed:
                    pending.confirmed = await self.service.cancel(pending.qid)
                if isinstance(item, AnswerDelta):
                    self.deliver(encode("answer.delta", id=q.id, text=item.text))
                    continue
                self._finish(q.id, pending)  # before the client can see the end: the id is free again
                if isinstance(item, AnswerDone):
                    self._done(q.id, item, pending)
                else:
                    self.send_error(item.code, item.message, q.id)
        except UserError as exc:
            self._finish(q.id, pending)
            self.send_error(*user_error(exc), q.id, **retry_hint(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("connection %s: question %s failed", self.id, q.id)
            self._finish(q.id, pending)
            self.send_error(P.INTERNAL, f"answering failed: {type(exc).__name__}", q.id)
        finally:
            self._finish(q.id, pending)

    def _finish(self, qid: str, pending: _Question) -> None:
        if self.questions.get(qid) is pending:
            del self.questions[qid]
            self.metrics.questions_in_flight.dec()

    def _done(self, qid: str, item: AnswerDone, pending: _Question) -> None:
        reason = item.finish_reason  # the engine's: a late cancel does not rewrite it
        self.metrics.answers.labels(finish_reason=reason).inc()
        if item.ttft_ms is not None:
            self.metrics.ttft.observe(float(item.ttft_ms) / 1000.0)
        self.deliver(
            encode(
                "answer.done",
                id=qid,
                text=item.text,
                evidence=list(item.evidence),
                ttft_ms=item.ttft_ms,
                usage=item.usage,
                finish_reason=reason,
            )
        )

    async def _cancel(self, msg: P.QuestionCancel) -> None:
        pending = self.questions.get(msg.id)
        if pending is None:
            raise ProtocolError(P.UNKNOWN_QUESTION, f"no question {msg.id!r} in flight", id=msg.id)
        pending.cancelled = True
        pending.confirmed = await self.service.cancel(pending.qid)


def user_error(exc: UserError) -> tuple[str, str]:
    """(code, one-line message); errors re-raised by Ray carry the original as ``cause``."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, UserError):
        exc = cause
    return exc.code, str(exc).strip().splitlines()[-1] if str(exc).strip() else exc.code


def retry_hint(exc: BaseException) -> dict:
    """``retry_after_ms`` for errors that go away by themselves (the encoder restarting)."""
    cause = unwrap(exc)
    return {"retry_after_ms": cause.retry_after_ms} if isinstance(cause, EncoderUnavailable) else {}
