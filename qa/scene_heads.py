"""`When` questions: a context of one frame per scene, the scene's first.

"When did the purple triangle appear?" asks for the start of every scene showing it. Chunks picked
by retrieval hold runs of frames from a few scenes, so the model would have to find the first frame
of each matching run and copy its tag. SceneTiling already knows where every scene starts, so the
context is built from those frames alone: each scene's first frame, sliced out of its stored chunk
with the KV and time tag it was prefilled with. The model then only matches content and copies the
tag that follows it, and a whole hour of scenes fits in a few thousand tokens. This is the path
for checkpoints that can copy (real ones); one trained with a ``scene_check`` format (the world
model) reads scene by scene instead (scene_check.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .context import ChunkRef, ContextPlan

_WHEN = re.compile(r"^\s*(?:when\b|at what (?:time|point|moment)\b)", re.IGNORECASE)


def is_when_question(question: str) -> bool:
    """Whether the question asks *when* something happened ("When did …", "At what time …")."""
    return bool(_WHEN.match(question))


@dataclass(frozen=True)
class SceneHead:
    pts: float  # the scene's first frame: its start
    ref: ChunkRef  # the stored chunk holding that frame


def scene_heads(
    starts: Sequence[float],
    refs: Sequence[ChunkRef],
    *,
    window: tuple[float, float] | None = None,
    scores: dict[str, float] | None = None,
    budget_tokens: int = 4096,
) -> list[SceneHead]:
    """One head per scene start that some chunk still holds (retention may have dropped the rest),
    inside ``window`` if given, in time order. Over the budget (a frame's tokens estimated from its
    chunk), the heads whose chunks retrieval scores best stay."""
    ordered = sorted(refs, key=lambda c: c.first_pts)
    heads: list[SceneHead] = []
    for s in sorted(set(starts)):
        if window is not None and not (window[0] - 1e-6 <= s <= window[1] + 1e-6):
            continue
        ref = next((c for c in ordered if c.first_pts - 1e-6 <= s <= c.last_pts + 1e-6), None)
        if ref is not None:
            heads.append(SceneHead(s, ref))
    cost = {id(h): math.ceil(h.ref.tokens / max(1, h.ref.frames)) for h in heads}
    if sum(cost.values()) <= budget_tokens:
        return heads
    keep, used = set(), 0
    for h in sorted(heads, key=lambda h: -(scores or {}).get(h.ref.cid, 0.0)):
        if used + cost[id(h)] <= budget_tokens:
            keep.add(id(h))
            used += cost[id(h)]
    return [h for h in heads if id(h) in keep]


def heads_plan(heads: Sequence[SceneHead], tokens: Sequence[int], frame_pts: Sequence[float]) -> ContextPlan:
    """The plan of a `when` context: one single-frame ref per head, with the tokens it really holds."""
    refs = [ChunkRef(h.ref.cid, p, p, n, 1) for h, n, p in zip(heads, tokens, frame_pts, strict=True)]
    return ContextPlan(refs, retrieved=[h.ref.cid for h in heads])
