"""Calls on a stream's encoder that outlive that encoder's death.

A call goes to the encoder the stream is placed on (workers/encoder_pool.py). If that encoder is
dead, the stream moves to the least-loaded live one and the call is made there once more; the new
encoder re-opens the stream from Redis (an append then answers StreamResumed and the caller replays,
workers/push_delivery.py). With no other live encoder the caller gets EncoderUnavailable and tries
again while Ray restarts the dead one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import ray

from .encoder_pool import EncoderPool
from .errors import EncoderUnavailable


class EncoderRouter:
    def __init__(self, pool: EncoderPool) -> None:
        self.pool = pool

    async def call(
        self,
        sid: str,
        method: str,
        *args,
        place: bool = True,
        cached: bool = False,
        on_call: Callable[[float], None] | None = None,
    ):
        """``method(*args)`` on the stream's encoder, awaited (no thread held while it runs), moved
        once to a live encoder if that one is dead. ``place`` off: a read, which never records a
        placement (see EncoderPool.for_stream); the lookup is a Redis read, in a thread.
        ``cached``: a push stream's append, placed and moved by this service alone (a file's decoder
        moves only its own stream), so the pool's last answer is current and needs no Redis read.
        ``on_call(t)``: just before the call."""
        name = self.pool.known_name(sid) if cached else None
        if name is not None:
            encoder = self.pool.handles[name]
        else:
            name, encoder = await asyncio.to_thread(self.pool.for_stream, sid, place=place)
        if on_call is not None:
            on_call(time.perf_counter())
        try:
            return await getattr(encoder, method).remote(*args)
        except ray.exceptions.RayActorError as exc:
            moved, encoder = await asyncio.to_thread(self.pool.replace, sid, name)
            if moved == name:
                raise encoder_unavailable(exc) from None
        try:
            return await getattr(encoder, method).remote(*args)
        except ray.exceptions.RayActorError as exc:
            raise encoder_unavailable(exc) from None

    async def info(self, sid: str, timeout: float = 10.0) -> dict:
        """The stream's record from its encoder, which may be a move behind (a status read): the
        encoder as last found here, a Redis read only when there is none; a failed read forgets it."""
        encoder = self.pool.known(sid)
        if encoder is None:
            encoder = (await asyncio.to_thread(lambda: self.pool.for_stream(sid, place=False)))[1]
        try:
            return await asyncio.wait_for(encoder.info.remote(sid), timeout)
        except (ray.exceptions.RayActorError, TimeoutError) as exc:
            self.pool.forget(sid)  # moved, or restarting: look it up again next time
            raise encoder_unavailable(exc) from None


def encoder_unavailable(exc: BaseException) -> EncoderUnavailable:
    """The error a caller retries on, for a Ray error of a dead or restarting encoder."""
    return EncoderUnavailable(f"the encoder is restarting ({type(exc).__name__})")
