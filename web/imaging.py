"""Pushed frames (JPEG / PNG / WebP bytes) to RGB arrays, as the protocol's errors, off the event loop.

Decoding happens here, at the edge, so the encoder only ever sees small RGB arrays: frames are
shrunk to ``max_side`` (the vision tower resizes to 384 anyway) before they cross to Ray. The rule
(formats, size and decode-work limits, EXIF orientation) is ingest/images.py's; this names its
refusals in protocol codes and runs them in a pool of their own (:func:`decode_frame`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from scenekv.defaults import VISION_MAX_SIDE
from scenekv.ingest.errors import ImageTooLarge, InvalidImage
from scenekv.ingest.images import MAX_PIXELS
from scenekv.ingest.images import decode_image as decode_upright

from .protocol import BAD_IMAGE, TOO_LARGE, ProtocolError

log = logging.getLogger(__name__)

# What ingest/images.py lets through decodes in at most ~0.3 s on one slow core (a 4096x4096 PNG of
# 256 KiB; most frames take 3 to 20 ms), so a frame past 2 s is hostile or the host is starved.
DECODE_TIMEOUT_S = 2.0


def decode_image(data: bytes, *, max_side: int = VISION_MAX_SIDE, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright, from JPEG / PNG / WebP bytes; ProtocolError for anything else.
    Synchronous: on a server, call :func:`decode_frame`."""
    try:
        return decode_upright(data, max_side=max_side, max_pixels=max_pixels)
    except ImageTooLarge as exc:
        raise ProtocolError(TOO_LARGE, str(exc)) from None
    except InvalidImage as exc:
        raise ProtocolError(BAD_IMAGE, str(exc)) from None


def decode_workers() -> int:
    """One decode thread per core this process may run on, at least 2."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(2, cores)


class DecodePool:
    """Threads that decode pushed frames, apart from the pool the gateway's service calls use, so a
    burst of large or hostile pictures can slow only other pictures, never a question or an attach.

    Threads, not processes: libjpeg-turbo, zlib and libwebp decode, and Pillow converts and
    resizes, with the GIL released, so ``workers`` threads decode on as many cores while the event
    loop runs. What still holds the GIL is short: Pillow copies a decoded WebP canvas into bytes
    (~30 ms for 16 Mpx). Measured on a 2-core host, seven of the costliest pictures the pre-checks
    admit (or refuse) at once: the loop's heartbeat waited at most 30-70 ms (2-7 ms without the
    WebP); the gateway's earlier policy (small JPEGs on the loop, the rest in its 64-thread blocking
    pool) stalled it 1.9-2.3 s. A process could be killed at a deadline, but killing a
    ProcessPoolExecutor's worker breaks the pool for every decode in it, forking a threaded server is
    unsafe, and the pre-checks already bound what a decode may cost.

    At most ``workers`` decodes run and none queue in the executor: a caller first takes a slot, and a
    slot comes back only when its decode has really ended. A caller that waits past ``timeout_s`` gets
    BAD_IMAGE at once, but its thread keeps decoding to the end (a thread cannot be stopped): with
    the pre-checks of ingest/images.py that is at most ~0.3 s, so timeouts are rare and short, and
    while every slot is held the next frames wait for one (backpressure; each connection pushes
    frames one at a time, so the waiting is bounded by the connections).
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or decode_workers()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="scenekv-decode")
        # one semaphore per event loop (asyncio primitives belong to one); a server has one loop
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.running = 0  # decodes in the threads now, timed out or not

    async def decode(
        self,
        data: bytes,
        *,
        timeout_s: float = DECODE_TIMEOUT_S,
        max_side: int = VISION_MAX_SIDE,
        max_pixels: int = MAX_PIXELS,
    ) -> np.ndarray:
        """:func:`decode_image` in a pool thread: the RGB array, or ProtocolError (BAD_IMAGE when the
        decode takes more than ``timeout_s``, from when it starts; the wait for a slot is not counted)."""
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.workers)
        await slots.acquire()
        try:
            job = self._executor.submit(self._run, data, max_side, max_pixels)
        except BaseException:
            slots.release()
            raise
        result: asyncio.Future[np.ndarray] = loop.create_future()

        def finished(job: Future[np.ndarray]) -> None:  # in the decode thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits for this one
                loop.call_soon_threadsafe(self._settle, result, job, slots)

        job.add_done_callback(finished)
        try:
            return await asyncio.wait_for(result, timeout_s)  # cancels ``result``, not the decode
        except TimeoutError:
            log.warning("a pushed image of %d bytes took more than %g s to decode", len(data), timeout_s)
            raise ProtocolError(BAD_IMAGE, f"image took more than {timeout_s:g} s to decode") from None

    def _run(self, data: bytes, max_side: int, max_pixels: int) -> np.ndarray:
        with self._lock:
            self.running += 1
        try:
            return decode_image(data, max_side=max_side, max_pixels=max_pixels)
        finally:
            with self._lock:
                self.running -= 1

    @staticmethod
    def _settle(
        result: asyncio.Future[np.ndarray], job: Future[np.ndarray], slots: asyncio.Semaphore
    ) -> None:
        """On the loop, once the decode has ended: give the slot back, hand the outcome to the caller
        if it still waits (a caller that timed out or went away has cancelled ``result``)."""
        slots.release()
        if result.cancelled():
            return
        if job.cancelled():  # the pool shut down before it ran
            result.cancel()
        elif (exc := job.exception()) is not None:
            result.set_exception(exc)
        else:
            result.set_result(job.result())

    def shutdown(self) -> None:
        """Stop taking decodes; running ones finish in their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)


_pool: DecodePool | None = None
_pool_lock = threading.Lock()


def decode_pool() -> DecodePool:
    """The process's decode pool, made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DecodePool()
        return _pool


async def decode_frame(
    data: bytes,
    *,
    timeout_s: float = DECODE_TIMEOUT_S,
    max_side: int = VISION_MAX_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright, of a pushed frame, decoded in the process's decode pool, never on
    the event loop; ProtocolError(TOO_LARGE / BAD_IMAGE) for refusals, BAD_IMAGE when the decode takes
    more than ``timeout_s`` (its thread still finishes it; see :class:`DecodePool`)."""
    return await decode_pool().decode(data, timeout_s=timeout_s, max_side=max_side, max_pixels=max_pixels)
