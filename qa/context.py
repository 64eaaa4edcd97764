"""Which chunks a question's context holds, under a token budget.

Order of priority: chunks covering the time anchor (or, without one, the most recent ones), then the
best-scoring chunks by retrieval, each only if it fits the budget. The chosen chunks are laid out in
time order, and their merged time spans are the answer's evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

RECENT_S = 30.0  # without an anchor, the context starts from the last 30 s of the stream
EVIDENCE_GAP_S = 2.5  # chunks closer than this merge into one evidence span


@dataclass(frozen=True)
class ChunkRef:
    cid: str
    first_pts: float
    last_pts: float
    tokens: int
    frames: int = 0  # frames the chunk spans (0: not known)

    def gap(self, t: float) -> float:
        """Seconds from ``t`` to the chunk's span (0 inside it)."""
        return (
            0.0
            if self.first_pts <= t <= self.last_pts
            else min(abs(self.first_pts - t), abs(self.last_pts - t))
        )


@dataclass
class ContextPlan:
    chunks: list[ChunkRef]  # time order
    anchored: list[str] = field(default_factory=list)
    retrieved: list[str] = field(default_factory=list)
    evidence_spans: list[tuple[float, float]] | None = None  # set where the chunks read are not the evidence
    # a chunk read for a moment after its last frame (dedup kept one frame of a still stretch): the
    # evidence runs to that moment, since its frame was on screen until then
    held_until: dict[str, float] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.chunks)

    def evidence(self) -> list[dict[str, float]]:
        if self.evidence_spans is not None:
            return [{"start": round(a, 3), "end": round(b, 3)} for a, b in self.evidence_spans]
        spans: list[list[float]] = []
        for c in self.chunks:
            last = max(c.last_pts, self.held_until.get(c.cid, c.last_pts))
            if spans and c.first_pts - spans[-1][1] <= EVIDENCE_GAP_S:
                spans[-1][1] = max(spans[-1][1], last)
            else:
                spans.append([c.first_pts, last])
        return [{"start": round(a, 3), "end": round(b, 3)} for a, b in spans]


def plan_context(
    chunks: Sequence[ChunkRef],
    *,
    window: tuple[float, float] | None,
    now: float | None,
    scores: dict[str, float] | None = None,
    budget_tokens: int = 4096,
    top_k: int = 4,
) -> ContextPlan:
    if budget_tokens < 1:
        raise ValueError("budget_tokens must be positive")
    ordered = sorted(chunks, key=lambda c: c.first_pts)
    if window is None:
        end = now if now is not None else (ordered[-1].last_pts if ordered else 0.0)
        window, centre = (end - RECENT_S, end), end  # recent first: nearest the present wins
    else:
        centre = (window[0] + window[1]) / 2
    a, b = window
    covering = [c for c in ordered if c.first_pts <= b and c.last_pts >= a]
    covering.sort(key=lambda c: abs((c.first_pts + c.last_pts) / 2 - centre))
    held_until: dict[str, float] = {}
    if not any(c.first_pts <= centre for c in covering):
        # Nothing in the window started by its centre: with dedup a still stretch keeps only its
        # first frame, so what was on screen then is the latest chunk that began before it.
        before = [c for c in ordered if c.first_pts <= centre]
        if before:
            covering.insert(0, before[-1])
            if before[-1].last_pts < centre:
                held_until[before[-1].cid] = centre
    chosen: dict[str, ChunkRef] = {}
    used = 0
    anchored: list[str] = []
    for c in covering:
        if used + c.tokens <= budget_tokens:
            chosen[c.cid] = c
            anchored.append(c.cid)
            used += c.tokens
    retrieved: list[str] = []
    ranked = sorted(
        (s, c.cid) for c in ordered if c.cid not in chosen and (s := (scores or {}).get(c.cid)) is not None
    )
    by_id = {c.cid: c for c in ordered}
    for _, cid in reversed(ranked):
        if len(retrieved) >= top_k:
            break
        c = by_id[cid]
        if used + c.tokens <= budget_tokens:
            chosen[cid] = c
            retrieved.append(cid)
            used += c.tokens
    plan = ContextPlan(sorted(chosen.values(), key=lambda c: c.first_pts), anchored, retrieved)
    plan.held_until = {c: t for c, t in held_until.items() if c in chosen}
    return plan
