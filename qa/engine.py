"""Answer a question from a stream's memory: anchor, retrieve, assemble, decode, cite.

Nothing here touches video: the context is built from stored KV chunks (Redis) and, for a live
stream, the chunks still on the encoder's device; the question is prefilled once on top and the
answer streams token by token. Works on any backend; imports no Ray.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from scenekv.vlm import Answerer, Generation, KVChunk, SamplingParams, VLMBackend, nearest_frame_pts

from .anchors import TimeAnchor, resolve_anchor
from .context import ChunkRef, ContextPlan, plan_context
from .scene_heads import heads_plan, is_when_question, scene_heads


class StreamMemory(Protocol):
    """What the engine needs of a stream's memory (memory_view.py implements it over Redis)."""

    def now(self) -> float | None: ...

    def refs(self) -> list[ChunkRef]: ...

    def scores(self, queries: torch.Tensor, cids: Sequence[str]) -> dict[str, float]: ...

    def scene_starts(self) -> list[float]: ...

    def load(self, cids: Sequence[str]) -> dict[str, KVChunk]: ...


@dataclass
class Answer:
    """Iterate for text deltas; then ``text``, ``evidence``, ``usage`` and ``finish_reason`` are final."""

    generation: Generation
    plan: ContextPlan
    anchor: TimeAnchor | None
    prompt_tokens: int
    started: float
    ttft_ms: float | None = None
    usage: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        for delta in self.generation:
            if self.ttft_ms is None:
                self.ttft_ms = (time.perf_counter() - self.started) * 1000
            yield delta
        if self.ttft_ms is None and self.generation.ttft_s is not None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000
        self.usage = {
            "memory_tokens": self.plan.tokens,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": len(self.generation.token_ids),
            "chunks": len(self.plan.chunks),
            "retrieved": len(self.plan.retrieved),
        }

    @property
    def text(self) -> str:
        return self.generation.text

    @property
    def finish_reason(self) -> str | None:
        return self.generation.finish_reason

    @property
    def evidence(self) -> list[dict[str, float]]:
        return self.plan.evidence()

    def result(self) -> dict:
        return {
            "answer": self.text,
            "evidence": self.evidence,
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "usage": self.usage,
            "finish_reason": self.finish_reason,
        }


class OneAtATime:
    """A generation whose every decode step holds the engine's lock: answers read from several
    threads interleave token by token instead of running the model at the same time."""

    def __init__(self, generation, lock: threading.Lock) -> None:
        self._generation, self._lock = generation, lock

    def __iter__(self):
        steps = iter(self._generation)
        while True:
            with self._lock:
                delta = next(steps, None)
            if delta is None:
                return
            yield delta

    def __getattr__(self, name: str):
        return getattr(self._generation, name)


class QAEngine:
    """One model, any number of streams. Thread-safe: planning, loading and every decode step take
    one lock, so questions asked from many threads share the model one forward at a time."""

    def __init__(self, backend: VLMBackend, *, budget_tokens: int = 4096, top_k: int = 4) -> None:
        self.backend = backend
        self.budget_tokens = budget_tokens
        self.top_k = top_k
        # The sink is the same system prompt every stream was encoded under: built once, reused.
        self.answerer = Answerer(backend)
        self._lock = threading.Lock()

    def ask(
        self,
        memory: StreamMemory,
        question: str,
        *,
        at: str | float | None = None,
        range_: Sequence | None = None,
        last: str | float | None = None,
        params: SamplingParams | None = None,
        cancel: threading.Event | None = None,
        top_k: int | None = None,
    ) -> Answer:
        """Plan and load the context now (errors surface here); decoding happens as the answer is read.

        ``top_k`` overrides how many chunks retrieval may add beyond the anchor (0: the anchor only).
        """
        started = time.perf_counter()
        if not question or not question.strip():
            from scenekv.errors import UserError

            raise UserError("the question is empty", code="bad_request")
        anchor = resolve_anchor(question, at=at, range_=range_, last=last)
        now = memory.now()
        if anchor is not None:
            anchor.check_reached(now)
        refs = memory.refs()
        with self._lock:
            question_ids = self.answerer.question_ids(question)
            scores = self._scores(memory, refs, question_ids) if top_k != 0 else {}
            when = self._when_context(memory, question, anchor, now, refs, scores)
            if when is not None:
                (plan, chunks), anchor_pts = when, None
            else:
                plan, chunks, anchor_pts = self._planned_context(memory, refs, anchor, now, scores, top_k)
                if anchor is not None and now is not None:
                    question_ids = self.answerer.question_ids(question, anchor_pts)
            generation = OneAtATime(
                self.answerer.ask(question, chunks, anchor_pts=anchor_pts, params=params, cancel=cancel),
                self._lock,
            )
        prompt_tokens = self.answerer.sink_len + plan.tokens + len(question_ids)
        return Answer(generation, plan, anchor, prompt_tokens, started)

    def _planned_context(
        self,
        memory: StreamMemory,
        refs: list[ChunkRef],
        anchor: TimeAnchor | None,
        now: float | None,
        scores: dict[str, float],
        top_k: int | None,
    ) -> tuple[ContextPlan, list[KVChunk], float | None]:
        """The anchor's chunks and the best-scoring others under the budget, loaded; and the
        anchor's frame pts (None without an anchor)."""
        plan = plan_context(
            refs,
            window=anchor.window(now) if anchor is not None and now is not None else None,
            now=now,
            scores=scores,
            budget_tokens=self.budget_tokens,
            top_k=self.top_k if top_k is None else top_k,
        )
        loaded = memory.load([c.cid for c in plan.chunks])
        plan.chunks = [c for c in plan.chunks if c.cid in loaded]  # evidence = what was really used
        chunks = [loaded[c.cid] for c in plan.chunks]
        # The anchor reaches the model in the layout it reads (prompt.py): the tag of the context
        # frame nearest it, and for an anchor_last layout a context that ends at that frame.
        anchor_pts = None
        if anchor is not None and now is not None:
            # the anchor's own chunks decide its frame; retrieved ones only where none covers it
            anchored = [c for ref, c in zip(plan.chunks, chunks, strict=True) if ref.cid in plan.anchored]
            anchor_pts = nearest_frame_pts(anchored or chunks, anchor.focus(now))
            if anchor_pts is not None and self.backend.prompt_format.anchor_last:
                plan.chunks, chunks = _cut(plan.chunks, chunks, anchor_pts)
                kept = {c.cid for c in plan.chunks}
                plan.anchored = [c for c in plan.anchored if c in kept]
                plan.retrieved = [c for c in plan.retrieved if c in kept]
        return plan, chunks, anchor_pts

    def _when_context(
        self,
        memory: StreamMemory,
        question: str,
        anchor: TimeAnchor | None,
        now: float | None,
        refs: list[ChunkRef],
        scores: dict[str, float],
    ) -> tuple[ContextPlan, list[KVChunk]] | None:
        """A `when` question's context: each scene's first frame (qa/scene_heads.py). None where it
        does not apply: another question, a model without a per-frame layout (M-RoPE frames cannot
        be sliced), or a stream with no scenes yet."""
        if not is_when_question(question):
            return None
        starts = memory.scene_starts()
        window = anchor.window(now) if anchor is not None and now is not None else None
        heads = scene_heads(starts, refs, window=window, scores=scores, budget_tokens=self.budget_tokens)
        if not heads:
            return None
        loaded = memory.load(sorted({h.ref.cid for h in heads}))
        kept, chunks = [], []
        if any(c.span != c.tokens for c in loaded.values()):
            return None  # M-RoPE: a frame's positions are not its token count, so it cannot be cut
        for h in heads:
            frame = loaded[h.ref.cid].frame_at(h.pts) if h.ref.cid in loaded else None
            if frame is not None and frame.first_pts < h.pts + 1.0 + 1e-6:
                kept.append(h)
                chunks.append(frame)
        if not chunks:
            return None
        plan = heads_plan(kept, [c.tokens for c in chunks], [c.first_pts for c in chunks])
        return plan, chunks

    def _scores(
        self, memory: StreamMemory, refs: list[ChunkRef], question_ids: list[int]
    ) -> dict[str, float]:
        if not refs:
            return {}
        return memory.scores(self.answerer.queries(question_ids), [r.cid for r in refs])


def _cut(refs: list[ChunkRef], chunks: list[KVChunk], pts: float) -> tuple[list[ChunkRef], list[KVChunk]]:
    """The plan and its chunks without frames after ``pts``; refs follow, so evidence and usage
    describe the context really used."""
    kept_refs, kept = [], []
    for ref, chunk in zip(refs, chunks, strict=True):
        cut = chunk.through(pts)
        if cut is not None:
            kept_refs.append(ChunkRef(ref.cid, cut.first_pts, cut.last_pts, cut.tokens))
            kept.append(cut)
    return kept_refs, kept
