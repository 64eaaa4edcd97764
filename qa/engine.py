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
from .policies import MemoryPolicy, single_frames
from .scene_check import SceneScan, SceneSpan, check_frames, check_indices, scan_plan, scene_spans
from .scene_heads import heads_plan, is_when_question, scene_heads
from .when_index import CANONICAL, IndexWhen, asked_kind, index_when
from .when_text import VERIFY, VERIFY_TOKENS, TextWhen, text_when

BASELINE_WINDOW = 8  # frames a `when` read covers under recent / full: no scene cuts to go by


class StreamMemory(Protocol):
    """What the engine needs of a stream's memory (memory_view.py implements it over Redis, and the
    content index's lookups that `when` uses where a memory has them: qa/when_index.py)."""

    def now(self) -> float | None: ...

    def refs(self) -> list[ChunkRef]: ...

    def scores(self, queries: torch.Tensor, cids: Sequence[str]) -> dict[str, float]: ...

    def scene_starts(self) -> list[float]: ...

    def load(self, cids: Sequence[str]) -> dict[str, KVChunk]: ...


@dataclass
class Answer:
    """Iterate for text deltas; then ``text``, ``evidence``, ``usage`` and ``finish_reason`` are final."""

    generation: Generation | SceneScan | IndexWhen | TextWhen  # `when` answers come in one piece
    plan: ContextPlan
    anchor: TimeAnchor | None
    prompt_tokens: int
    started: float
    ttft_ms: float | None = None
    usage: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        return self.follow(iter(self.generation))

    def follow(self, deltas: Iterator[str]) -> Iterator[str]:
        """The answer's text as ``deltas`` brings it: the generation's own, run here (iterating the
        answer) or by the encoder's scheduler in a batch with others (workers/encoder_scheduler.py)."""
        for delta in deltas:  # a scan yields "" between its checks: no text, a chance to interleave
            if delta and self.ttft_ms is None:
                self.ttft_ms = (time.perf_counter() - self.started) * 1000
            yield delta
        if self.ttft_ms is None and self.generation.ttft_s is not None:
            # no text yet at the first token (it was special, or part of a character): its time
            first = getattr(self.generation, "first_token_at", None) or time.perf_counter()
            self.ttft_ms = (first - self.started) * 1000
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


class QAEngine:
    """One model, any number of streams. Planning and loading take one lock; decoding happens as an
    answer is read, by whoever reads it: in a service, the encoder's one scheduler, which decodes
    every running answer in the same forward passes (workers/encoder_scheduler.py). Reading two
    answers of one engine from two threads at once is not supported: give them to a scheduler."""

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
        policy: str | None = None,
    ) -> Answer:
        """Plan and load the context now (errors surface here); decoding happens as the answer is read.

        ``top_k`` overrides how many chunks retrieval may add beyond the anchor (0: the anchor only).
        ``policy`` picks the frames another way (qa/policies.py: ``recent``, ``uniform:N``, ``full``),
        for measuring SceneKV against what users would otherwise run.
        """
        started = time.perf_counter()
        if not question or not question.strip():
            from scenekv.errors import UserError

            raise UserError("the question is empty", code="bad_request")
        memory_policy = MemoryPolicy.parse(policy)
        anchor = resolve_anchor(question, at=at, range_=range_, last=last)
        now = memory.now()
        if anchor is not None:
            anchor.check_reached(now)
        refs = memory.refs()
        with self._lock:
            if memory_policy.is_baseline:
                return self._baseline(
                    memory, question, anchor, now, refs, memory_policy, params, cancel, started
                )
            indexed = self._index_when(memory, question, anchor, now, refs, cancel)
            if indexed is not None:
                return Answer(indexed, indexed.plan, anchor, indexed.plan.tokens, started)
            textual = self._text_when(memory, question, anchor, now, refs, cancel)
            if textual is not None:
                return Answer(textual, textual.plan, anchor, textual.plan.tokens, started)
            question_ids = self.answerer.question_ids(question)
            retrieve = top_k != 0 and self._may_retrieve(question, refs, anchor, now)
            scores = self._scores(memory, refs, question_ids) if retrieve else {}
            scan = self._scene_scan(memory, question, anchor, now, refs, scores, cancel)
            if scan is not None:
                prompt_tokens = self.answerer.sink_len + scan.plan.tokens + len(question_ids)
                return Answer(scan, scan.plan, anchor, prompt_tokens, started)
            when = self._when_context(memory, question, anchor, now, refs, scores)
            if when is not None:
                (plan, chunks), anchor_pts = when, None
            else:
                plan, chunks, anchor_pts = self._planned_context(memory, refs, anchor, now, scores, top_k)
                if anchor is not None and now is not None:
                    question_ids = self.answerer.question_ids(question, anchor_pts)
            generation = self.answerer.ask(
                question, chunks, anchor_pts=anchor_pts, params=params, cancel=cancel
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
            window=_window(anchor, now),
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

    def _baseline(
        self,
        memory: StreamMemory,
        question: str,
        anchor: TimeAnchor | None,
        now: float | None,
        refs: list[ChunkRef],
        policy: MemoryPolicy,
        params: SamplingParams | None,
        cancel: threading.Event | None,
        started: float,
    ) -> Answer:
        """An answer from the frames a baseline policy allows (qa/policies.py), by the same engine:
        `when` checked frame by frame, an anchor read off the nearest frame it has."""
        budget = self.budget_tokens
        if policy.kind == "full":  # everything the model's positions hold
            limit = getattr(self.backend.model.config.get_text_config(), "max_position_embeddings", 0)
            budget = max(budget, limit - self.answerer.sink_len - 1024 - 64)  # room for the answer
        picked = policy.refs(refs, budget_tokens=budget)
        loaded = memory.load([c.cid for c in picked])
        targets = policy.targets(sorted(refs, key=lambda c: c.first_pts)) if policy.kind == "uniform" else []
        chunks = policy.frames_of([loaded[c.cid] for c in picked if c.cid in loaded], targets)
        plan = ContextPlan([_ref_of(c) for c in chunks], retrieved=[c.cid for c in picked])
        if self.backend.prompt_format.scene_check and is_when_question(question) and chunks:
            # no SceneTiling here: a baseline's "scenes" are its samples, or fixed windows of frames
            frames = single_frames(chunks)
            if (window := _window(anchor, now)) is not None:
                a, b = window
                frames = [f for f in frames if a - 1e-6 <= f.first_pts <= b + 1e-6] or frames
            size = 1 if policy.kind == "uniform" else BASELINE_WINDOW
            groups = [frames[i : i + size] for i in range(0, len(frames), size)]
            ends = [g[0].first_pts for g in groups[1:]] + [now if now is not None else frames[-1].last_pts]
            spans = [
                SceneSpan(g[0].first_pts, e, (), open=i == len(groups) - 1)
                for i, (g, e) in enumerate(zip(groups, ends, strict=True))
            ]
            read = [[g[k] for k in check_indices(len(g))] for g in groups]
            reads = ContextPlan([_ref_of(f) for g in read for f in g], retrieved=plan.retrieved)
            scan = self._scan(question, spans, read, reads, cancel)
            return Answer(scan, scan.plan, anchor, self.answerer.sink_len + scan.plan.tokens, started)
        anchor_pts = None
        if anchor is not None and now is not None and chunks:
            anchor_pts = nearest_frame_pts(chunks, anchor.focus(now))
            if anchor_pts is not None and self.backend.prompt_format.anchor_last:
                plan.chunks, chunks = _cut(plan.chunks, chunks, anchor_pts)
        generation = self.answerer.ask(question, chunks, anchor_pts=anchor_pts, params=params, cancel=cancel)
        question_ids = self.answerer.question_ids(question, anchor_pts)
        return Answer(
            generation, plan, anchor, self.answerer.sink_len + plan.tokens + len(question_ids), started
        )

    def _index_when(
        self,
        memory: StreamMemory,
        question: str,
        anchor: TimeAnchor | None,
        now: float | None,
        refs: list[ChunkRef],
        cancel: threading.Event | None,
    ) -> IndexWhen | None:
        """A `when` question answered from the stream's content index (qa/when_index.py). None where
        that does not apply: no ``scene_check``, no index, or a stream too far behind it (the scene
        scan answers then, and the hub queues the stream's readings)."""
        if not (self.backend.prompt_format.scene_check and is_when_question(question) and refs):
            return None
        end = now if now is not None else max(r.last_pts for r in refs)
        check_ids = self.answerer.check_ids(CANONICAL[asked_kind(question)])

        def read(frames: list[KVChunk]) -> str:
            return self.answerer.read(check_ids, frames)

        def reading(frames: list[KVChunk]) -> Generation:
            return self.answerer.reading(check_ids, frames)

        window = _window(anchor, now)
        return index_when(memory, question, refs, window, end, read, self._lock, cancel, reading)

    def _text_when(
        self,
        memory: StreamMemory,
        question: str,
        anchor: TimeAnchor | None,
        now: float | None,
        refs: list[ChunkRef],
        cancel: threading.Event | None,
    ) -> TextWhen | None:
        """A `when` question for a checkpoint without ``scene_check``: caption candidates verified by
        the model (qa/when_text.py). None where that does not apply (no captions yet)."""
        if self.backend.prompt_format.scene_check or not is_when_question(question) or not refs:
            return None
        verify_ids = self.answerer.question_ids(VERIFY.format(question=question.strip()))

        def read(frames: list[KVChunk]) -> str:
            return self.answerer.read(verify_ids, frames, max_new_tokens=VERIFY_TOKENS)

        def reading(frames: list[KVChunk]) -> Generation:
            return self.answerer.reading(verify_ids, frames, max_new_tokens=VERIFY_TOKENS)

        end = now if now is not None else max(r.last_pts for r in refs)
        window = _window(anchor, now)
        return text_when(memory, question, refs, window, end, read, self._lock, cancel, reading)

    def _scene_scan(
        self,
        memory: StreamMemory,
        question: str,
        anchor: TimeAnchor | None,
        now: float | None,
        refs: list[ChunkRef],
        scores: dict[str, float],
        cancel: threading.Event | None,
    ) -> SceneScan | None:
        """A `when` question checked scene by scene (qa/scene_check.py), for a checkpoint trained to
        (``scene_check`` in its format) on per-frame KV. None where that does not apply."""
        if not (self.backend.prompt_format.scene_check and is_when_question(question) and refs):
            return None
        end = now if now is not None else max(r.last_pts for r in refs)
        window = _window(anchor, now)
        spans = scene_spans(memory.scene_starts(), refs, end=end, window=window, scores=scores)
        if not spans and window is None:
            return None  # no scene records: the planned context answers instead of a blind "never"
        loaded = memory.load(sorted({c.cid for sp in spans for c in sp.refs}))
        if not all(c.cuttable for c in loaded.values()):
            return None  # M-RoPE: frames cannot be cut out of their chunks
        frames = [check_frames(sp, loaded) for sp in spans]
        return self._scan(question, spans, frames, scan_plan(spans, frames), cancel)

    def _scan(
        self,
        question: str,
        spans: list[SceneSpan],
        frames: list[list[KVChunk]],
        plan: ContextPlan,
        cancel: threading.Event | None,
    ) -> SceneScan:
        """The reads of ``spans`` (each on its ``frames``) as a lazy generation."""
        check_ids = self.answerer.check_ids(question)
        read = lambda c: self.answerer.read(check_ids, c)  # noqa: E731
        reading = lambda c: self.answerer.reading(check_ids, c)  # noqa: E731
        return SceneScan(
            spans, frames, question, read, plan=plan, lock=self._lock, cancel=cancel, reading=reading
        )

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
        window = _window(anchor, now)
        heads = scene_heads(starts, refs, window=window, scores=scores, budget_tokens=self.budget_tokens)
        if not heads:
            return None
        loaded = memory.load(sorted({h.ref.cid for h in heads}))
        kept, chunks = [], []
        if not all(c.cuttable for c in loaded.values()):
            return None  # M-RoPE: frames cannot be cut out of their chunks
        for h in heads:
            frame = loaded[h.ref.cid].frame_at(h.pts) if h.ref.cid in loaded else None
            if frame is not None and frame.first_pts < h.pts + 1.0 + 1e-6:
                kept.append(h)
                chunks.append(frame)
        if not chunks:
            return None
        plan = heads_plan(kept, [c.tokens for c in chunks], [c.first_pts for c in chunks])
        return plan, chunks

    def _may_retrieve(
        self, question: str, refs: list[ChunkRef], anchor: TimeAnchor | None, now: float | None
    ) -> bool:
        """Whether retrieval scores can change the context. Scoring runs the question through the
        model once more (its queries), about half of a question's time to first token on the
        full-size 0.5B on a CPU (docs/benchmarks.md, TTFT: where the time goes), so it is skipped
        where the anchor's window (or the recent 30 s) already holds every chunk: nothing is left
        to retrieve, and the plan is the same. A `when` question ranks its scenes by them."""
        if is_when_question(question):
            return True
        window = _window(anchor, now)
        plan = plan_context(refs, window=window, now=now, budget_tokens=self.budget_tokens, top_k=0)
        return len(plan.chunks) < len(refs)

    def _scores(
        self, memory: StreamMemory, refs: list[ChunkRef], question_ids: list[int]
    ) -> dict[str, float]:
        if not refs:
            return {}
        return memory.scores(self.answerer.queries(question_ids), [r.cid for r in refs])


def _window(anchor: TimeAnchor | None, now: float | None) -> tuple[float, float] | None:
    """The anchor's time window on a stream whose newest frame is ``now`` (None without either)."""
    return anchor.window(now) if anchor is not None and now is not None else None


def _ref_of(chunk: KVChunk) -> ChunkRef:
    return ChunkRef(
        f"{chunk.first_pts:g}-{chunk.last_pts:g}",
        chunk.first_pts,
        chunk.last_pts,
        chunk.tokens,
        len(chunk.frames),
    )


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
