"""Ray actors: thin shells around the pure pipeline (workers.stream_hub.StreamHub, scenekv.ingest).

- EncoderActor owns the model (one per GPU/CPU worker), a StreamHub and the one scheduler that runs
  every model step (workers/encoder_scheduler.py): vision batches of every stream it serves, the
  decoding of every running answer, `when` read, caption and frame reading in the same forward
  passes, the captions' and readings' planning between.
  It is a threaded actor: its threads queue work on the scheduler and wait, so a status call never
  waits for a long append.
- DecoderActor owns one source: it decodes and samples in its own process and feeds the encoder
  with bounded in-flight batches (files: wait, never drop; live sources: ingest drops to the newest
  frame when the encoder falls behind).
Both restart on failure (max_restarts) and resume from Redis: streams are re-attached by id.
"""

from __future__ import annotations

import threading
import time

import ray

from scenekv.defaults import VISION_MAX_SIDE
from scenekv.errors import UserError
from scenekv.memory import StreamBusy, StreamNotFound, WriteFailed, WriterBusy

from .encoder_config import EncoderConfig
from .encoder_scheduler import EncoderScheduler, isolated
from .errors import StreamResumed


def _error_dict(exc: BaseException) -> dict:
    if isinstance(exc, UserError):
        return {"type": "error", "code": exc.code, "message": str(exc)}
    return {"type": "error", "code": "internal", "message": f"{type(exc).__name__}: {exc}"}


# Restarts without limit: a camera runs for weeks and every restart resumes from Redis. A model
# that cannot load fails in __init__, which Ray does not restart.
# Appends, calls and answers wait on the scheduler on one of the 64 threads each; status calls and
# cancels have threads of their own (the "status" group), so a busy encoder still answers them at once.
@ray.remote(max_concurrency=64, max_restarts=-1, max_task_retries=0, concurrency_groups={"status": 4})
class EncoderActor:
    def __init__(self, model: str, redis_url: str, config: EncoderConfig) -> None:
        from scenekv.memory import MemoryStore
        from scenekv.vlm import load_backend
        from scenekv.workers.stream_hub import StreamHub

        self.load_error: BaseException | None = None
        self._cancels: dict[str, threading.Event] = {}
        self.started = time.time()
        self.pool_id = config.pool_id
        self.counts = {"frames_encoded": 0, "append_calls": 0, "decode_tokens": 0, "questions": 0}
        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        try:
            self.backend = load_backend(model, device=config.device, dtype=config.dtype)
        except Exception as exc:  # kept for describe_model: Ray's creation-task error loses the message
            self.load_error = exc
            return
        self.store = MemoryStore(redis_url, config.prefix)
        self.hub = StreamHub(
            self.backend,
            self.store,
            rolling=config.rolling,
            captions=config.captions,
            budget_tokens=config.budget_tokens,
        )
        from functools import partial

        from scenekv.vlm.batch_decode import step_generations

        self.scheduler = EncoderScheduler(
            self._append_batch,
            step_generations=partial(step_generations, self.backend),
            background=self._background_step,
            max_frames=config.batch_frames,
            policy=config.scheduling,
        )
        self.hub.decode_with(self.scheduler.adopt)  # captions' and readings' tokens: in the batch

    @ray.method(concurrency_group="status")
    def stats(self) -> dict:
        """Where this encoder runs and what it has done since it started (/metrics, /healthz).
        Read off the scheduler: a status call never waits for a long append."""
        import os

        return {
            "node": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "device": str(self.backend.device) if self.load_error is None else None,
            "streams": len(self.hub.streams) if self.load_error is None else 0,
            "uptime_s": round(time.time() - self.started, 3),
            **self.counts,
            **self._batch_figures(),
            **self._caption_figures(),
        }

    def _batch_figures(self) -> dict:
        scheduler = getattr(self, "scheduler", None)
        if scheduler is None:  # the model did not load
            return {}
        return {
            "queue_depth": scheduler.depth,
            "queue_wait_seconds": round(scheduler.queue_wait_s, 6),
            "call_wait_seconds": round(scheduler.call_wait_s, 6),
            "busy_seconds": round(scheduler.busy_s, 6),
            "steps": scheduler.steps,
            "running_generations": scheduler.running,
            "background_generations": scheduler.background_running,
            "batch_streams": scheduler.batch_streams.as_dict(),
            "batch_frames": scheduler.batch_frames.as_dict(),
            "decode_batch": scheduler.decode_batch.as_dict(),
        }

    def _caption_figures(self) -> dict:
        if self.load_error is not None:
            return {}
        due, reads = self.hub.captions_due, self.hub.readings_due
        return {
            "captions_due": len(due.jobs),
            "caption_steps": due.counts.steps,
            "captions_made": due.counts.done,
            "caption_retries": due.counts.retried,
            "captions_given_up": due.counts.given_up,
            "readings_due_streams": reads.due(),
            "frames_read": reads.counts.frames,
            "frame_reads_given_up": reads.counts.given_up,
            "watch_hits": self.hub.watches.hits,
            "webhooks_delivered": self.hub.webhooks.counts.delivered,
            "webhook_retries": self.hub.webhooks.counts.retried,
            "webhooks_failed": self.hub.webhooks.counts.failed,
        }

    def describe_model(self) -> dict:
        if self.load_error is not None:
            raise self.load_error
        return {
            "model": self.backend.model_id,
            "random_weights": self.backend.is_random,
            "world_only": self.backend.world_only,
            "device": str(self.backend.device),
            "dtype": str(self.backend.dtype).replace("torch.", ""),
            "pool_id": self.pool_id,
        }

    def open(
        self, sid: str | None, source: str, fps: float, carriers: str, retention: dict | None = None
    ) -> dict:
        # This actor is the streams' only writer: after a crash its predecessor's lease is stale.
        return self.scheduler.call(
            lambda: self.hub.open(
                sid=sid, source=source, fps=fps, carriers=carriers, takeover=True, retention=retention
            )
        )

    def open_streams(self) -> list[str]:
        """Streams this actor holds a device window, lease and writer for (after any end in progress)."""
        return self.scheduler.call(lambda: list(self.hub.streams))

    @ray.method(concurrency_group="status")
    def pid(self) -> int:
        import os

        return os.getpid()

    def attach(self, sid: str) -> dict:
        """Continue a stored stream here (after a restart too); a deleted or expired one is not re-created."""
        return self.scheduler.call(lambda: self._attach(sid))

    def _attach(self, sid: str) -> dict:  # on the scheduler's thread
        if sid not in self.hub.streams and not self.store.exists(sid):
            raise StreamNotFound(f"stream {sid!r} no longer exists")
        return self.hub.open(sid=sid, takeover=True)

    def append(self, sid: str, frames: list) -> dict:
        """Encode ``frames`` into an open stream, in a vision batch with whatever other streams'
        frames are pending (workers/encoder_scheduler.py). A stream that is not open here (this actor
        restarted, or dropped it after a write failure) is re-opened from Redis and StreamResumed is
        raised with its stored last pts: the caller re-sends from there, so no frame lands after a
        silent gap."""
        if not frames:  # a check (is the stream still open here?): no vision batch to wait for
            result = self.scheduler.call(lambda: self._append_batch([(sid, [])])[0])
            if isinstance(result, BaseException):
                raise result
            return result
        return self.scheduler.submit(sid, frames)

    def _append_batch(self, requests: list[tuple[str, list]]) -> list:
        """One vision batch (on the scheduler's thread): each request's result, or its exception."""
        results: list = [None] * len(requests)
        todo = []
        for i, (sid, _) in enumerate(requests):
            if sid in self.hub.streams:
                todo.append(i)
                continue
            try:
                last = self._attach(sid)["last_pts"]
                results[i] = StreamResumed(
                    f"stream {sid!r} was re-opened from Redis; resend after {last}", last
                )
            except Exception as exc:
                results[i] = exc
        # never raise from here: a stream re-opened above must get its StreamResumed, not a retry
        # of its frames after the gap; the rest are isolated as the scheduler isolates any batch
        done = isolated([requests[i] for i in todo], self.hub.append_batch) if todo else []
        for i, out in zip(todo, done, strict=True):
            if isinstance(out, WriteFailed | WriterBusy | StreamBusy | StreamNotFound):
                self.hub.forget(requests[i][0])  # its memory is unusable here: drop window and writer
            elif isinstance(out, dict):
                self.counts["frames_encoded"] += out["frames"]
                self.counts["append_calls"] += 1
            results[i] = out
        return results

    def _background_step(self) -> float | None:
        """One step of a due caption or frame reading (on the scheduler's thread, between others):
        its planning, the hand-over of its generations to the packed decode, or its store write."""
        if not self.hub.background_due():
            return None
        return self.hub.background_step()

    def end(self, sid: str) -> list[dict]:
        """Close the last scene and wait for the stream's captions and frame readings; a stream this
        actor does not have open (it restarted) is re-opened from Redis first, so its last scene
        closes all the same. Each step goes through the scheduler: other streams are encoded and
        answered between them, and the captions' and frames' reads decode with the answers."""

        def reopen() -> bool:
            if sid not in self.hub.streams:
                if self.store.exists(sid) and self.store.info(sid).status == "ended":
                    return False  # ended before (and not continued since): nothing to close
                self._attach(sid)
            return True

        if not self.scheduler.call(reopen):
            return []
        return self.hub.end(sid, run=self.scheduler.call)

    def detach(self, sid: str) -> None:
        self.scheduler.call(lambda: self.hub.detach(sid))

    def caption_missing(self, sid: str) -> int:
        """Caption closed scenes that have none (a stream ingested with captions off); returns how many."""
        return self.hub.caption_missing(sid, run=self.scheduler.call)

    @ray.method(concurrency_group="status")
    def info(self, sid: str) -> dict:
        mem = self.hub.streams.get(sid)
        info = mem.info() if mem is not None else self.store.info(sid)
        return info.as_dict()

    @ray.method(concurrency_group="status")
    def cancel(self, qid: str) -> bool:
        event = self._cancels.get(qid)
        if event is not None:
            event.set()
        return event is not None

    def ask_stream(self, sid: str, qid: str, question: str, anchor: dict, params: dict, check: bool = False):
        """Yields {"type": "delta", "text"} ... then {"type": "done", ...} or {"type": "error", ...}.
        Planned on the scheduler, then decoded there with every other running answer (a `when`
        answer's reads too, a few at a time); a client that goes (the generator closed) or a cancel
        drops it from the batch at the next step.

        ``check``: the caller keeps pushed frames of this stream that Redis may not hold. If the
        stream is not open here (this actor restarted) the only item is {"type": "not_open"}: the
        caller replays them (its empty append re-opens the stream, under the stream's push lock,
        so no frame lands after a gap) and asks again."""
        from contextlib import closing

        from scenekv.vlm import Generation, SamplingParams

        cancel = self._cancels[qid] = threading.Event()  # a retry of qid gets its own
        self.counts["questions"] += 1
        arrived = time.perf_counter()
        try:

            def plan():
                if check and sid not in self.hub.streams:
                    return {"type": "not_open"}, None
                answer = self.hub.ask(sid, question, params=SamplingParams(**params), cancel=cancel, **anchor)
                gen = answer.generation  # a plain answer's joins the batch before the next step
                return answer, gen if isinstance(gen, Generation) else None

            answer, steps = self.scheduler.plan(plan)  # the check and the planning: one call
            if isinstance(answer, dict):
                yield answer
                return
            answer.started = arrived  # its ttft_ms counts the wait for its planning step too
            if steps is None:  # a `when` answer: its reads decode in the batch, a few at a time
                steps = answer.generation.scheduled(self.scheduler.call, self.scheduler.complete)
            with closing(steps), closing(answer.follow(steps)) as deltas:
                for delta in deltas:
                    if not delta:  # a `when` read between two others: nothing to send
                        continue
                    self.counts["decode_tokens"] += 1
                    yield {"type": "delta", "text": delta}
            yield {"type": "done", "text": answer.text, **answer.result()}
        except Exception as exc:  # the client gets the error; the actor keeps serving
            yield _error_dict(exc)
        finally:
            cancel.set()  # whatever is left of it (a client gone mid-answer) stops at the next step
            if self._cancels.get(qid) is cancel:
                del self._cancels[qid]

    def shutdown(self) -> None:
        self.scheduler.close()
        self.hub.close()


@ray.remote(max_concurrency=2, max_restarts=2)
class DecoderActor:
    """Decodes one source and feeds an EncoderActor; ``progress()`` can be asked while it runs."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.progress_ = {
            "frames": 0,
            "pts": None,
            "lag_s": 0.0,
            "dropped": 0,
            "status": "idle",
            "error": None,
        }

    MAX_ENCODER_RESTARTS = 3

    def run(
        self, pool, sid: str, source: str, fps: float, batch: int = 8, after: float | None = None
    ) -> dict:
        """Feed every frame after ``after`` (a resumed stream's last pts) to the stream's encoder
        (``pool``: an EncoderPool) in batches.

        If the encoder dies mid-file, the stream moves to another live encoder (or waits for Ray's
        restart of the only one) and continues from what Redis acknowledged: decoding restarts just
        after the stream's last stored pts (frames that were only on the dead encoder's device are
        decoded and encoded again, none twice in memory).
        """
        self.progress_["status"] = "running"
        closed: list[dict] = []
        name, encoder = pool.for_stream(sid)
        for attempt in range(self.MAX_ENCODER_RESTARTS + 1):
            try:
                fed, live = self._feed(encoder, sid, source, fps, batch, after)
                closed += fed
                if not self._stop.is_set() and not live:
                    # A file read to its end closes (and captions) its last scene, as session.end
                    # would; the stream stays attachable and answerable.
                    closed += ray.get(encoder.end.remote(sid))
                    pool.release(sid)  # closed: placed afresh if it is continued
                self.progress_["status"] = "stopped" if self._stop.is_set() else "done"
                break
            except (ray.exceptions.RayActorError, StreamResumed) as exc:
                if attempt == self.MAX_ENCODER_RESTARTS:
                    self.progress_.update(status="error", error=_error_dict(exc))
                    break
                self.progress_["restarts"] = attempt + 1
                if isinstance(exc, ray.exceptions.RayActorError):
                    name, encoder = pool.replace(sid, name)
                else:  # re-opened: follow the record, which a gateway may have moved meanwhile
                    name, encoder = pool.for_stream(sid)
                after = self._resume_point(encoder, sid)
            except Exception as exc:
                self.progress_.update(status="error", error=_error_dict(exc))
                break
        return {**self.progress_, "closed": closed}

    def _feed(
        self, encoder, sid: str, source: str, fps: float, batch: int, after: float | None
    ) -> tuple[list[dict], bool]:
        """Frames after ``after`` into the encoder; (closed scenes, whether the source was live)."""
        from scenekv.ingest import open_source

        closed: list[dict] = []
        pending: list = []
        with open_source(source, fps=fps, max_side=VISION_MAX_SIDE) as src:
            self._source = src
            # A file resumes after the stored frames; a live source restarts its clock at 0 on every
            # connection, so its frames are placed after the stored ones instead of being skipped.
            shift = after + 1.0 / fps if (src.live and after is not None) else 0.0
            for frame in src:
                if self._stop.is_set():
                    break
                pts = frame.pts + shift
                if not src.live and after is not None and pts <= after:
                    continue
                pending.append((pts, frame.image))
                if len(pending) >= batch:
                    closed += ray.get(encoder.append.remote(sid, pending))["closed"]
                    pending = []
                stats = src.stats
                self.progress_.update(
                    frames=self.progress_["frames"] + 1,
                    pts=pts,
                    lag_s=stats.lag_s or 0.0,
                    dropped=stats.dropped,
                )
            if pending:
                closed += ray.get(encoder.append.remote(sid, pending))["closed"]
            return closed, src.live

    @staticmethod
    def _resume_point(encoder, sid: str, wait_s: float = 120.0) -> float | None:
        """Wait for the restarted encoder, re-attach the stream, return its last stored pts."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return ray.get(encoder.attach.remote(sid))["last_pts"]
            except ray.exceptions.RayActorError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def progress(self) -> dict:
        return dict(self.progress_)

    def stop(self) -> None:
        """Stop soon: also closes the source, so a live reader waiting on the network lets go."""
        self._stop.set()
        source = getattr(self, "_source", None)
        if source is not None:
            source.close()


@ray.remote(max_restarts=0)
class RangeDecoder:
    """Decodes one time range of a file into a bounded queue; the driver feeds the encoder in order.

    Ranges of one file are decoded in parallel (each seeks to its start); the queue bound keeps a
    range that is far ahead of the encoder from holding more than a few batches of frames.
    """

    def run(self, source: str, fps: float, start: float, end: float | None, queue, batch: int = 8) -> dict:
        """Returns {"frames", "warnings"}: ingest's warnings (damaged packets, ...) go back to the
        caller, whose terminal shows them (this actor's output stays in Ray's logs)."""
        import os
        import warnings

        from scenekv import ingest
        from scenekv.ingest import open_source

        frames, pending = 0, []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with open_source(source, fps=fps, max_side=VISION_MAX_SIDE, start=start, end=end) as src:
                for frame in src:
                    pending.append((frame.pts, frame.image))
                    frames += 1
                    if len(pending) >= batch:
                        queue.put(pending)
                        pending = []
        if pending:
            queue.put(pending)
        queue.put(None)  # this range is complete
        here = os.path.dirname(ingest.__file__) + os.sep  # ingest's own warnings, not its dependencies
        own = [str(w.message) for w in caught if (w.filename or "").startswith(here)]
        return {"frames": frames, "warnings": list(dict.fromkeys(own))}
