"""A file encoded from time ranges decoded in parallel, with the memory of a single pass.

Each RangeDecoder seeks to its range's start, so no actor decodes from the beginning; bounded Ray
queues carry their batches to the encoder strictly in time order, in batches of 8 counted from the
first frame whatever the ranges cut: a frame's KV depends on which frames were on the device when
it was prefilled, so the batches of one DecoderActor pass give the same memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import ray

from scenekv.errors import UserError

from .actors import RangeDecoder
from .encoder_router import EncoderRouter

log = logging.getLogger(__name__)


def ingest_ranges(
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

    def append(batch: list) -> int:
        router.call(sid, "append", sid, batch)
        if on_batch is not None:
            on_batch(batch[-1][0])
        return len(batch)

    frames, pending = 0, []
    try:
        for queue, run in zip(queues, runs, strict=True):
            while True:
                try:
                    batch = queue.get(timeout=1.0)
                except Empty:
                    ready, _ = ray.wait([run], timeout=0)
                    if ready and queue.empty():  # finished without its end marker: it failed
                        raise _range_failed(source, run) from None
                    continue
                if batch is None:
                    for text in ray.get(run).get("warnings", []):
                        log.warning("%s", text)
                    break
                pending += batch
                while len(pending) >= 8:
                    frames += append(pending[:8])
                    pending = pending[8:]
        if pending:
            frames += append(pending)
    finally:
        for d in decoders:
            ray.kill(d)
        for q in queues:
            q.shutdown()
    return frames


def _range_failed(source: str, run: ray.ObjectRef) -> UserError:
    """The error of a range decoder that stopped without its end marker (its own UserError if any)."""
    try:
        ray.get(run)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, UserError) else None
        return cause or UserError(f"{source}: {exc}", code="internal")
    return UserError(f"{source}: a range decoder stopped early", code="internal")
