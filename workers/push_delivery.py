"""Push delivery: pushed frames reach the stream's encoder in order, and a dead encoder loses none.

Each push stream's frames are kept (workers/unsaved.py) until Redis holds them. A delivery is a
generator of appends (``PushDelivery._delivery``): it yields each batch of frames to append and is
sent the result, or thrown the StreamResumed of an encoder that re-opened the stream from Redis, on
which it first replays every kept frame newer than what Redis holds. The same delivery runs with
blocking calls (``run_delivery``) or with awaited Ray refs (``run_delivery_async``, the gateway's
event loop), so both paths replay by one rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Generator

import numpy as np

from scenekv.errors import unwrap
from scenekv.memory import MemoryStore

from .encoder_router import EncoderRouter
from .errors import EncoderUnavailable, StreamResumed
from .unsaved import UnsavedFrames


class PushDelivery:
    def __init__(self, router: EncoderRouter, store: MemoryStore, touch: Callable[[str], None]) -> None:
        """``touch(sid)``: called on every push (the service releases push streams left idle)."""
        self.router, self.store, self._touch = router, store, touch
        self._unsaved: dict[str, UnsavedFrames] = {}  # push streams: encoded, not yet in Redis
        self._lock = threading.Lock()

    def push(self, sid: str, pts: float, image: np.ndarray) -> dict:
        """Append one pushed frame (blocks while the encoder is busy: that is the backpressure).

        The frame is kept until Redis holds it. If the encoder died (EncoderUnavailable: call again
        with the same frame once it is back) its successor re-opens the stream from Redis, and the
        frames that were only on the dead one's device are replayed before this one: an encoded
        frame is never lost.
        """
        unsaved = self._unsaved_of(sid)
        with unsaved.lock:
            unsaved.add(float(pts), image)
            try:
                steps = self._delivery(unsaved, [(float(pts), image)])
                result = run_delivery(steps, self._appender(sid))
            except EncoderUnavailable:
                raise  # the caller sends it again: keep it
            except BaseException:
                unsaved.discard(float(pts))  # refused (bad pts, write failure): never replay it
                raise
            if len(unsaved) > 8:
                unsaved.saved_through(self.store.stored_pts(sid))
        return result

    async def push_async(
        self, sid: str, pts: float, image: np.ndarray, *, on_call: Callable[[float], None] | None = None
    ) -> dict:
        """``push`` for an event loop: the append is an awaited Ray ref, so a frame waiting for its
        vision batch holds no thread (only the short Redis reads hop to one). One pusher at a time
        per stream, as in ``push``: the stream's lock is taken without blocking the loop, after the
        loop's own lock for the stream. ``on_call(t)``: the moment the first append is sent to the
        encoder (the gateway's share of a frame's latency ends there)."""
        # Shielded: a client that goes away mid-frame leaves the frame to finish (a thread would
        # have), so its copy is kept or dropped by what the encoder did, and the lock is let go.
        push = asyncio.ensure_future(self._push_async(sid, float(pts), image, on_call))
        push.add_done_callback(_retrieved)
        return await asyncio.shield(push)

    async def _push_async(self, sid: str, pts: float, image: np.ndarray, on_call) -> dict:
        unsaved = self._unsaved_of(sid)
        async with unsaved.async_lock():
            while not unsaved.lock.acquire(blocking=False):  # a thread (end, a replay) holds it
                await asyncio.sleep(0.002)
            try:
                unsaved.add(pts, image)
                try:
                    steps = self._delivery(unsaved, [(pts, image)])
                    result = await run_delivery_async(steps, self._appender_async(sid, on_call))
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
        self._touch(sid)
        with self._lock:
            return self._unsaved.setdefault(sid, UnsavedFrames())

    def drop_unsent(self, sid: str, after: float | None) -> None:
        """The client was told to send the frames after ``after`` again: drop their copies."""
        unsaved = self._unsaved.get(sid)
        if unsaved is not None:
            with unsaved.lock:
                unsaved.drop_after(after)

    def replay_lost_frames(self, sid: str) -> list[dict]:
        """Give a restarted encoder the frames only its dead predecessor had (before a push stream
        ends, detaches or is asked about); the scenes the replay closed. Nothing kept: nothing sent."""
        unsaved = self._unsaved.get(sid)
        if unsaved is None or not len(unsaved):
            return []
        with unsaved.lock:  # an empty append: a re-opened stream answers StreamResumed -> replay
            return run_delivery(self._delivery(unsaved, []), self._appender(sid))["closed"]

    def replay_all_lost_frames(self) -> None:
        """``replay_lost_frames`` for every push stream, errors ignored (at shutdown: a restarted
        encoder may lack frames the client was told are in)."""
        for sid in list(self._unsaved):
            with contextlib.suppress(Exception):
                self.replay_lost_frames(sid)

    def stream_lock(self, sid: str):
        """The push stream's lock (see UnsavedFrames.lock); nothing to hold for other streams."""
        unsaved = self._unsaved.get(sid)
        return unsaved.lock if unsaved is not None else contextlib.nullcontext()

    def forget(self, sid: str) -> None:
        """The stream ended: its encoder wrote everything to Redis."""
        with self._lock:
            self._unsaved.pop(sid, None)

    @staticmethod
    def _delivery(unsaved: UnsavedFrames, batch: list) -> Generator[list, object, dict]:
        """The appends that deliver ``batch``, replaying first what a re-opened stream lost: yields
        each append's frames and is sent its result (or thrown its StreamResumed); returns the
        merged result. The caller holds unsaved.lock; run_delivery(_async) makes the calls."""
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

    def _appender(self, sid: str) -> Callable[[list], dict]:
        return lambda frames: self.router.call(sid, "append", sid, frames)

    def _appender_async(
        self, sid: str, on_call: Callable[[float], None] | None = None
    ) -> Callable[[list], Awaitable[dict]]:
        async def append(frames: list) -> dict:
            nonlocal on_call
            called, on_call = on_call, None  # the first append of a delivery only
            return await self.router.call_async(sid, "append", sid, frames, on_call=called)

        return append


def run_delivery(steps: Generator, call: Callable[[list], dict]) -> dict:
    """Make a delivery's appends (PushDelivery._delivery) with blocking calls; its merged result."""
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


async def run_delivery_async(steps: Generator, call: Callable[[list], Awaitable[dict]]) -> dict:
    """``run_delivery`` with awaited calls (the event loop's push path)."""
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


def _retrieved(task: asyncio.Future) -> None:
    """A shielded push whose caller went away: its outcome is read here, not warned about."""
    if not task.cancelled():
        task.exception()
