"""Questions on a stream: answered on the stream's encoder, which owns the model and the live window.

An answer streams from the encoder token by token; if that encoder dies before the first token the
question is asked once more on the stream's next encoder (after it got the frames only the dead one
had), and after a token it fails (an answer is not spliced across models). A question is cancelled
by id on whichever encoder runs it. Async only: the service's event loop awaits Ray's refs.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import ray

from scenekv.errors import UserError
from scenekv.qa.policies import MemoryPolicy

from .encoder_pool import EncoderPool
from .encoder_router import encoder_unavailable
from .errors import EncoderUnavailable
from .push_delivery import PushDelivery, retrieved
from .results import AnswerEvent, answer_event


class Questions:
    def __init__(
        self,
        pool: EncoderPool,
        require_stream: Callable[[str], Awaitable[None]],
        delivery: PushDelivery,
    ) -> None:
        """``require_stream(sid)`` raises for an unknown stream; ``delivery`` gives a restarted
        encoder the pushed frames only its predecessor had, so an answer sees every acknowledged
        frame."""
        self.pool = pool
        self._require_stream, self.delivery = require_stream, delivery

    async def ask(
        self,
        sid: str,
        question: str,
        *,
        qid: str | None = None,
        at=None,
        range_=None,
        last=None,
        max_tokens: int = 128,
        temperature: float = 0.0,
        policy: str | None = None,
    ) -> AsyncIterator[AnswerEvent]:
        """Stream AnswerDelta events, then one AnswerDone (or AnswerError). Ray's streaming
        generator is awaited item by item, so an answer holds no thread while it streams.

        ``policy``: which frames the answer may read (qa/policies.py; default SceneKV's own plan;
        ``recent``, ``uniform:N`` and ``full`` are the baselines SceneKV-Bench measures).

        A push stream whose frames this service still keeps (not yet in Redis) is asked with
        ``check``: an encoder that no longer has it open (it restarted) says so instead of
        answering; the kept frames are replayed (the replay re-opens the stream under its push
        lock) and the question asked again. The check rides on the question's own call, so a
        question costs one scheduler call, not two. A reader that leaves early cancels the answer
        on the encoder (its slot in the batch is freed at the next step)."""
        call = self._prepare(sid, question, qid, at, range_, last, max_tokens, temperature, policy)
        await self._require_stream(sid)
        if self.delivery.replay_due(sid):  # a replay an earlier restart left undone goes first
            await self.delivery.replay_lost_frames(sid)
        name, encoder = await asyncio.to_thread(lambda: self.pool.for_stream(sid, place=False))
        reopened = died = 0
        complete = False
        try:
            while True:
                started = False
                try:
                    stream = encoder.ask_stream.options(num_returns="streaming")
                    async for ref in stream.remote(*call, self.delivery.holds(sid)):
                        item = await ref
                        if item.get("type") == "not_open" and not started:
                            break  # the encoder restarted: replay what it lacks, then ask again
                        started = True
                        complete = item.get("type") != "delta"
                        yield answer_event(item)
                        if complete:
                            return  # never wait on the actor for the stream's end
                    else:
                        complete = True
                        return
                    reopened += 1
                    if reopened > 2:
                        raise EncoderUnavailable("the encoder keeps restarting; ask again")
                    await self.delivery.replay_lost_frames(sid)
                except ray.exceptions.RayActorError as exc:
                    died += 1
                    final = started or died > 1
                    name, encoder = await asyncio.to_thread(self._failed, exc, sid, name, final)
                    await self.delivery.replay_lost_frames(sid)  # the new encoder gets them first
        finally:
            if not complete:  # the reader left (or an error): the encoder stops it at its next step
                with contextlib.suppress(RuntimeError):
                    asyncio.ensure_future(self.cancel(call[1])).add_done_callback(retrieved)

    @staticmethod
    def _prepare(sid, question, qid, at, range_, last, max_tokens, temperature, policy=None) -> tuple:
        """Checks before a question; the call's args."""
        if not 1 <= int(max_tokens) <= 1024:
            raise UserError("max_tokens must be between 1 and 1024", code="bad_request")
        anchor = {"at": at, "range_": range_, "last": last}  # the engine's keyword arguments
        if policy is not None:
            anchor["policy"] = str(MemoryPolicy.parse(policy))  # a bad one fails here, in one line
        params = {"max_new_tokens": int(max_tokens), "temperature": float(temperature)}
        return sid, qid or uuid.uuid4().hex, question, anchor, params

    def _failed(self, exc: BaseException, sid: str, name: str, final: bool) -> tuple:
        """The encoder died under a question: where to ask again, or EncoderUnavailable if tokens
        were already streamed (an answer is not spliced across models), it was the second try, or
        there is no other encoder."""
        moved, encoder = (name, None) if final else self.pool.replace(sid, name)
        if final or moved == name:
            raise encoder_unavailable(exc) from None
        return moved, encoder

    async def cancel(self, qid: str, timeout: float = 5.0) -> bool:
        """Stop question ``qid`` on whichever encoder runs it (all asked at once, their answers
        awaited, no thread held); False if none does."""
        refs = [asyncio.ensure_future(e.cancel.remote(qid)) for e in self.pool.handles.values()]
        done, pending = await asyncio.wait(refs, timeout=timeout)
        for future in pending:  # a restarting encoder runs no question
            future.cancel()
        return any(f.result() is True for f in done if f.exception() is None)
