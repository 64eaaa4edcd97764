"""Push delivery: pushed frames reach the stream's encoder in order, and a dead encoder loses none.

Each push stream's frames are kept (workers/unsaved.py) until Redis holds them. A delivery is a
generator of appends (``PushDelivery._delivery``): it yields each batch of frames to append and is
sent the result, or thrown the StreamResumed of an encoder that re-opened the stream from Redis, on
which it first replays every kept frame newer than what Redis holds; ``run_delivery`` makes the
appends as awaited Ray refs, on the service's event loop (a frame waiting for its vision batch holds
no thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Generator

import numpy as np

from scenekv.errors import unwrap
from scenekv.memory import MemoryStore

from .encoder_router import EncoderRouter
from .errors import EncoderUnavailable, StreamResumed
from .unsaved import UnsavedFrames

log = logging.getLogger(__name__)


class PushDelivery:
    def __init__(self, router: EncoderRouter, store: MemoryStore, touch: Callable[[str], None]) -> None:
        """``touch(sid)``: called on every push (the service releases push streams left idle)."""
        self.router, self.store, self._touch = router, store, touch
        self._unsaved: dict[str, UnsavedFrames] = {}  # push streams: encoded, not yet in Redis

    async def push(
        self, sid: str, pts: float, image: np.ndarray, *, on_call: Callable[[float], None] | None = None
    ) -> dict:
        """Append one pushed frame; returns when it is encoded (the wait is the backpressure). The
        append is an awaited Ray ref, so a frame waiting for its vision batch holds no thread.

        The frame is kept until Redis holds it. If the encoder died (EncoderUnavailable: call again
        with the same frame once it is back) its successor re-opens the stream from Redis, and the
        frames that were only on the dead one's device are replayed before this one: an encoded
        frame is never lost. One pusher at a time per stream (the stream's lock). ``on_call(t)``:
        the moment the first append is sent to the encoder (the gateway's share of a frame's
        latency ends there)."""
        # Shielded: a client that goes away mid-frame leaves the frame to finish, so its copy is
        # kept or dropped by what the encoder did, and the lock is let go.
        return await shielded(self._push(sid, float(pts), image, on_call))

    async def _push(self, sid: str, pts: float, image: np.ndarray, on_call) -> dict:
        unsaved = self._unsaved_of(sid)
        async with unsaved.lock:
            unsaved.add(pts, image)
            try:
                steps = self._delivery(unsaved, [(pts, image)])
                result = await run_delivery(steps, self._appender(sid, on_call))
            except EncoderUnavailable:
                raise  # the caller sends it again: keep it
            except BaseException:
                unsaved.discard(pts)  # refused (bad pts, write failure): never replay it
                raise
            if len(unsaved) > 8 and unsaved.pushes % 8 == 0:  # a Redis read every 8th frame
                unsaved.saved_through(await asyncio.to_thread(self.store.stored_pts, sid))
        return result

    def _unsaved_of(self, sid: str) -> UnsavedFrames:
        self._touch(sid)
        return self._unsaved.setdefault(sid, UnsavedFrames())

    async def drop_unsent(self, sid: str, after: float | None) -> None:
        """The client was told to send the frames after ``after`` again: drop their copies."""
        unsaved = self._unsaved.get(sid)
        if unsaved is not None:
            async with unsaved.lock:
                unsaved.drop_after(after)

    def holds(self, sid: str) -> bool:
        """Whether frames of ``sid`` are kept that Redis may not hold yet (a question then asks its
        encoder to say whether it still has them: see Questions.ask)."""
        unsaved = self._unsaved.get(sid)
        return unsaved is not None and len(unsaved) > 0

    def replay_due(self, sid: str) -> bool:
        """Whether a restarted encoder was found and not all of its replay got through."""
        unsaved = self._unsaved.get(sid)
        return unsaved is not None and unsaved.replay

    async def replay_lost_frames(self, sid: str, *, locked: bool = False) -> list[dict]:
        """Give a restarted encoder the frames only its dead predecessor had (before a push stream
        ends, detaches or is asked about); the scenes the replay closed. Nothing kept: nothing sent.
        ``locked``: the caller holds the stream's lock (``stream_lock``)."""
        unsaved = self._unsaved.get(sid)
        if unsaved is None or not len(unsaved):
            return []
        # Shielded, as a push is: a caller that goes (a client gone, a question cancelled) leaves
        # the replay to finish, so what the encoder took and what is kept stay in step
        return await shielded(self._replay(sid, unsaved, locked))

    async def _replay(self, sid: str, unsaved: UnsavedFrames, locked: bool) -> list[dict]:
        async with contextlib.nullcontext() if locked else unsaved.lock:
            # an empty append: a re-opened stream answers StreamResumed -> replay
            return (await run_delivery(self._delivery(unsaved, []), self._appender(sid)))["closed"]

    async def replay_all_lost_frames(self) -> None:
        """``replay_lost_frames`` for every push stream, errors ignored (at shutdown: a restarted
        encoder may lack frames the client was told are in)."""
        for sid in list(self._unsaved):
            with contextlib.suppress(Exception):
                await self.replay_lost_frames(sid)

    def stream_lock(self, sid: str) -> contextlib.AbstractAsyncContextManager:
        """The push stream's lock (see UnsavedFrames.lock); nothing to hold for other streams."""
        unsaved = self._unsaved.get(sid)
        return unsaved.lock if unsaved is not None else contextlib.nullcontext()

    def forget(self, sid: str) -> None:
        """The stream ended: its encoder wrote everything to Redis."""
        self._unsaved.pop(sid, None)

    @staticmethod
    def _delivery(unsaved: UnsavedFrames, batch: list) -> Generator[list, object, dict]:
        """The appends that deliver ``batch``, replaying first what a re-opened stream lost: yields
        each append's frames and is sent its result (or thrown its StreamResumed); returns the
        merged result. The caller holds unsaved.lock; run_delivery makes the calls."""
        if unsaved.replay:
            batch = unsaved.after(unsaved.replay_after)
        for _ in range(3):  # the encoder can die again while frames are replayed
            try:
                closed: list = []
                for i in range(0, max(1, len(batch)), 8):
                    part = batch[i : i + 8]
                    try:
                        result = yield part
                    except StreamResumed:
                        raise
                    except Exception as exc:
                        if unsaved.replay:  # the encoder has these frames already: stop replaying
                            log.warning("a replayed frame was refused (%s); the replay ends there", exc)
                            unsaved.replay = False
                        raise
                    if unsaved.replay and part:  # taken: a replay cut short goes on after them
                        unsaved.replay_after = part[-1][0]
                    closed += result.get("closed", [])
                unsaved.replay = False
                return {**result, "closed": closed}
            except StreamResumed as exc:  # replay, in order, everything newer than Redis holds
                unsaved.replay, unsaved.replay_after = True, unwrap(exc).last_pts
                batch = unsaved.after(unsaved.replay_after)
        raise EncoderUnavailable("the encoder keeps restarting; send the frame again")

    def _appender(
        self, sid: str, on_call: Callable[[float], None] | None = None
    ) -> Callable[[list], Awaitable[dict]]:
        async def append(frames: list) -> dict:
            nonlocal on_call
            called, on_call = on_call, None  # the first append of a delivery only
            return await self.router.call(sid, "append", sid, frames, cached=True, on_call=called)

        return append


async def run_delivery(steps: Generator, call: Callable[[list], Awaitable[dict]]) -> dict:
    """Make a delivery's appends (PushDelivery._delivery); its merged result."""
    reply, error = None, None
    while True:
        try:
            frames = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value
        try:
            reply, error = await call(frames), None
        except Exception as exc:  # thrown into the delivery: it replays, or ends a replay, or not
            reply, error = None, exc


async def shielded(coro: Awaitable):
    """Await ``coro`` as a task its caller's cancellation does not stop (it runs to its end, and
    its outcome is read even if nobody awaits it any more)."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(retrieved)
    return await asyncio.shield(task)


def retrieved(task: asyncio.Future) -> None:
    """A task nobody may await (a shielded push or replay whose caller went away, a cancel sent on
    the way out): its outcome is read here, not warned about."""
    if not task.cancelled():
        task.exception()
