"""Bulk ingest of a video file: encode it once into a stream's memory, reuse it on every later run.

`scenekv ask`, `scenekv caption` and SceneKV-Bench share it. The stream id is derived from the file's
identity and the encoding settings, so a second run (or one resumed after an interruption) finds the
memory the first one left and continues after its last stored frame.

The file is encoded from time ranges decoded in parallel, with the memory of a single pass: each
RangeDecoder seeks to its range's start, so no actor decodes from the beginning; bounded Ray
queues carry their batches to the encoder strictly in time order, in batches of 8 counted from the
first frame whatever the ranges cut: a frame's KV depends on which frames were on the device when
it was prefilled, so the batches of one DecoderActor pass give the same memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import ray

from scenekv.errors import UserError, first_line, redis_full, unwrap
from scenekv.ingest.probe import media_duration

from .actors import RangeDecoder
from .encoder_router import EncoderRouter

log = logging.getLogger(__name__)


def stream_id_for(source: str, model: str, fps: float, carriers: str) -> str:
    """A stable id per (file content identity, model, fps, carriers): re-running reuses the memory."""
    path = Path(source)
    if path.is_file():
        st = path.stat()
        ident = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"
    else:
        ident = source
    digest = hashlib.sha1(f"{ident}|{model}|{fps:g}|{carriers}".encode()).hexdigest()[:16]
    return f"file-{digest}" if path.is_file() else f"url-{digest}"


async def ingest_file(
    service, source: str, *, fps: float, carriers: str, on_progress=None, parts: int | None = None
) -> tuple[str, bool]:
    """Encode ``source`` into memory unless an earlier run already did; returns (sid, reused).
    ``service``: the SceneKVService (SceneKVService.ingest_file is the way in).

    Long files are split into time ranges decoded in parallel (one per ~minute, at most ``parts``,
    default: the CPU count); a run that was interrupted continues after its last stored frame.
    """
    if not Path(source).is_file():
        if "://" not in source:
            raise UserError(f"no such file: {source}", code="not_found")
        raise UserError("bulk ingest takes video files; a live URL is served as a stream", code="bad_request")
    sid = stream_id_for(os.path.abspath(source), service.model["model"], fps, carriers)
    if await asyncio.to_thread(_ended, service.store, sid):
        return sid, True
    duration = await asyncio.to_thread(media_duration, source)
    if duration is None:
        raise UserError(
            f"{source}: the file declares no duration; cannot split it into ranges", code="bad_media"
        )
    n = parts or max(1, min(os.cpu_count() or 1, int(duration // 60)))
    try:
        info = await service.start_stream(source, fps=fps, carriers=carriers, sid=sid, decode=False)
        await service.ingest_ranges(  # the ranges feed it
            source, sid, duration=duration, fps=fps, parts=n, after=info.last_pts, on_batch=on_progress
        )
        await service.end_stream(sid)
    except Exception as exc:
        refused = await asyncio.to_thread(store_refused, service.store, source, sid, duration, exc)
        raise refused or exc from None
    return sid, False


def _ended(store, sid: str) -> bool:
    return store.exists(sid) and store.info(sid).status == "ended"


def store_refused(store, source: str, sid: str, duration: float, exc: BaseException):
    """A UserError saying what Redis kept when it refused writes (full, read-only), else None."""
    cause = unwrap(exc)
    text = f"{cause} {getattr(cause, '__cause__', '') or ''}"
    full = redis_full(text)
    if getattr(cause, "code", None) not in ("memory_write_failed", "memory_backpressure") and not (
        type(cause).__module__.startswith("redis") and full
    ):
        return None
    name = os.path.basename(source)
    try:
        info = store.info(sid) if store.exists(sid) else None
        if info is not None and info.chunks:
            kept = (
                f"{info.chunks} chunks up to {info.last_pts or 0:.0f} s of {name} ({duration:.0f} s) are "
                "stored, the rest is not"
            )
        else:  # not even the first chunk (or the stream itself) could be written
            kept = f"nothing of {name} ({duration:.0f} s) could be stored"
    except Exception:
        kept = f"what is stored of {name} could not be checked"
    if full:
        why = "Redis is full"
    elif getattr(cause, "code", None) == "memory_backpressure":
        why = f"Redis is too slow to take the writes ({first_line(str(cause))})"
    else:
        why = f"Redis refused the writes ({first_line(str(cause))})"
    fix = "free memory or raise maxmemory" if full else "fix Redis"
    return UserError(
        f"{why}: {kept}; {fix} and run the same command again to resume",
        code="store_full" if full else "memory_write_failed",
    )


async def ingest_ranges(
    router: EncoderRouter,
    source: str,
    sid: str,
    *,
    duration: float,
    fps: float = 1.0,
    parts: int = 2,
    after: float | None = None,
    on_batch: Callable[[float], None] | None = None,
) -> int:
    """Encode ``source`` into the open stream ``sid`` from ``parts`` ranges; the frames encoded.
    ``after`` resumes a stream after its last stored frame; ``on_batch(pts)`` reports progress."""
    from ray.util.queue import Empty, Queue

    # strictly after the last stored frame: the first range sees that frame and samples on exactly
    # as one pass would (after + half a slot would skip a slot when ``after`` is late in its own)
    begin = 0.0 if after is None else after + 1e-4
    parts = max(1, min(parts, int((duration - begin) * fps) // 8 or 1))
    step = (duration - begin) / parts
    bounds = [(begin + i * step, None if i == parts - 1 else begin + (i + 1) * step) for i in range(parts)]
    queues = [Queue(maxsize=4) for _ in bounds]
    decoders = [RangeDecoder.remote() for _ in bounds]
    runs = [d.run.remote(source, fps, a, b, q) for d, (a, b), q in zip(decoders, bounds, queues, strict=True)]

    async def append(batch: list) -> int:
        await router.call(sid, "append", sid, batch)
        if on_batch is not None:
            on_batch(batch[-1][0])
        return len(batch)

    frames, pending = 0, []
    try:
        for queue, run in zip(queues, runs, strict=True):
            while True:
                try:
                    batch = await queue.get_async(timeout=1.0)
                except Empty:
                    ready, _ = ray.wait([run], timeout=0)
                    # finished without its end marker: it failed (qsize awaited: no ray.get here)
                    if ready and await queue.actor.qsize.remote() == 0:
                        raise await _range_failed(source, run) from None
                    continue
                if batch is None:
                    for text in (await run).get("warnings", []):
                        log.warning("%s", text)
                    break
                pending += batch
                while len(pending) >= 8:
                    frames += await append(pending[:8])
                    pending = pending[8:]
        if pending:
            frames += await append(pending)
    finally:
        for d in decoders:
            ray.kill(d)
        for q in queues:
            q.shutdown()
    return frames


async def _range_failed(source: str, run: ray.ObjectRef) -> UserError:
    """The error of a range decoder that stopped without its end marker (its own UserError if any)."""
    try:
        await run
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, UserError) else None
        return cause or UserError(f"{source}: {exc}", code="internal")
    return UserError(f"{source}: a range decoder stopped early", code="internal")
