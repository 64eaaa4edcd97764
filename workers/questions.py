"""Questions on a stream: answered on the stream's encoder, which owns the model and the live window.

An answer streams from the encoder token by token; if that encoder dies before the first token the
question is asked once more on the stream's next encoder (after it got the frames only the dead one
had), and after a token it fails (an answer is not spliced across models). A question is cancelled
by id on whichever encoder runs it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import ray

from scenekv.errors import UserError
from scenekv.qa.policies import MemoryPolicy

from .encoder_pool import EncoderPool
from .encoder_router import encoder_unavailable


class Questions:
    def __init__(
        self,
        pool: EncoderPool,
        require_stream: Callable[[str], None],
        replay_lost_frames: Callable[[str], object],
    ) -> None:
        """``require_stream(sid)`` raises for an unknown stream; ``replay_lost_frames(sid)`` gives a
        restarted encoder the pushed frames only its predecessor had, so an answer sees every
        acknowledged frame."""
        self.pool = pool
        self._require_stream, self._replay_lost_frames = require_stream, replay_lost_frames

    def ask(
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
    ) -> Iterator[dict]:
        """Stream {"type": "delta"} messages, then one {"type": "done"} (or {"type": "error"}).

        ``policy``: which frames the answer may read (qa/policies.py; default SceneKV's own plan;
        ``recent``, ``uniform:N`` and ``full`` are the baselines SceneKV-Bench measures)."""
        call = self._prepare(sid, question, qid, at, range_, last, max_tokens, temperature, policy)
        name, encoder = self.pool.for_stream(sid, place=False)
        for attempt in range(2):  # a dead encoder's question runs again on the stream's next one
            started = False
            try:
                for ref in encoder.ask_stream.options(num_returns="streaming").remote(*call):
                    item = ray.get(ref)
                    started = True
                    yield item
                    if item.get("type") != "delta":
                        return  # the answer is complete: never wait on the actor for the stream's end
                return
            except ray.exceptions.RayActorError as exc:
                name, encoder = self._failed(exc, sid, name, started or attempt > 0)

    async def ask_async(
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
    ) -> AsyncIterator[dict]:
        """``ask`` for an event loop: Ray's streaming generator is awaited item by item, so an
        answer holds no thread while it streams (only the checks before it run in one)."""
        call = await asyncio.to_thread(
            self._prepare, sid, question, qid, at, range_, last, max_tokens, temperature, policy
        )
        name, encoder = await asyncio.to_thread(lambda: self.pool.for_stream(sid, place=False))
        for attempt in range(2):
            started = False
            try:
                async for ref in encoder.ask_stream.options(num_returns="streaming").remote(*call):
                    item = await ref
                    started = True
                    yield item
                    if item.get("type") != "delta":
                        return
                return
            except ray.exceptions.RayActorError as exc:
                name, encoder = await asyncio.to_thread(self._failed, exc, sid, name, started or attempt > 0)

    def _prepare(self, sid, question, qid, at, range_, last, max_tokens, temperature, policy=None) -> tuple:
        """Checks before a question (and the frames a restarted encoder lacks); the call's args."""
        self._require_stream(sid)
        self._replay_lost_frames(sid)  # after an encoder restart, the question sees every acknowledged frame
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
        self._replay_lost_frames(sid)  # the new encoder gets the frames only the dead one had, first
        return moved, encoder

    async def cancel_async(self, qid: str, timeout: float = 5.0) -> bool:
        """Stop question ``qid`` on whichever encoder runs it (all asked at once, their answers
        awaited, no thread held); False if none does."""
        refs = [asyncio.ensure_future(e.cancel.remote(qid)) for e in self.pool.handles.values()]
        done, pending = await asyncio.wait(refs, timeout=timeout)
        for future in pending:  # a restarting encoder runs no question
            future.cancel()
        return any(f.result() is True for f in done if f.exception() is None)
