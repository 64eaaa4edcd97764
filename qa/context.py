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


@dataclass
class ContextPlan:
    chunks: list[ChunkRef]  # time order
    anchored: list[str] = field(default_factory=list)
    retrieved: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.chunks)

    def evidence(self) -> list[dict[str, float]]:
        spans: list[list[float]] = []
        for c in self.chunks:
            if spans and c.first_pts - spans[-1][1] <= EVIDENCE_GAP_S:
                spans[-1][1] = max(spans[-1][1], c.last_pts)
            else:
                spans.append([c.first_pts, c.last_pts])
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
    if not any(c.first_pts <= centre for c in covering):
        # Nothing in the window started by its centre: with dedup a still stretch keeps only its
        # first frame, so what was on screen then is the latest chunk that began before it.
        before = [c for c in ordered if c.first_pts <= centre]
        if before:
            covering.insert(0, before[-1])
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
    return ContextPlan(sorted(chosen.values(), key=lambda c: c.first_pts), anchored, retrieved)
