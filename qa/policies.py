"""Which frames a question may read: SceneKV's own plan, and the baselines it is measured against.

SceneKV-Bench (bench/qa.py) compares the shipped memory with what users would otherwise run, on the
same model, the same stored KV and the same engine, so only the choice of frames differs:

- ``scenekv`` (the default): the anchor's chunks and retrieval's best under the token budget
  (qa/context.py); `when` checked scene by scene over SceneTiling's scenes (qa/scene_check.py).
- ``recent``: the newest chunks that fit the budget and nothing else, as a sliding-window
  streaming model keeps them.
- ``uniform:N``: N frames spread evenly over the whole stream, as a clip pipeline samples them
  (NVIDIA VSS takes 30-32 a clip).
- ``full``: every stored frame in time order, as a plain transformers user re-prefills the whole
  video, up to the model's position limit (past it, the newest that fit).

Under a baseline a `when` question is read sample by sample (``uniform``) or over fixed windows of
8 frames (``recent``, ``full``): no scenes, SceneTiling is SceneKV's, so a `when` answer is as exact
as the window. An anchored question reads the frame nearest its anchor among the baseline's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scenekv.errors import UserError
from scenekv.vlm import KVChunk

from .context import ChunkRef

KINDS = ("scenekv", "recent", "uniform", "full")


@dataclass(frozen=True)
class MemoryPolicy:
    kind: str = "scenekv"
    frames: int = 0  # uniform: how many

    @classmethod
    def parse(cls, text: str | None) -> MemoryPolicy:
        """``scenekv`` / ``recent`` / ``uniform:32`` / ``full`` (None: ``scenekv``)."""
        name, _, arg = (text or "scenekv").strip().lower().partition(":")
        if name not in KINDS or (name == "uniform") != bool(arg):
            raise UserError(
                f"memory policy {text!r}: expected scenekv, recent, uniform:N or full", code="bad_request"
            )
        if name != "uniform":
            return cls(name)
        if not (arg.isascii() and arg.isdigit()) or not 1 <= int(arg) <= 4096:
            raise UserError(f"memory policy {text!r}: N must be 1-4096", code="bad_request")
        return cls(name, int(arg))

    @property
    def is_baseline(self) -> bool:
        return self.kind != "scenekv"

    def __str__(self) -> str:
        return f"uniform:{self.frames}" if self.kind == "uniform" else self.kind

    def refs(self, refs: Sequence[ChunkRef], *, budget_tokens: int) -> list[ChunkRef]:
        """The chunks to load, in time order: ``recent``/``full`` fill ``budget_tokens`` from the
        newest back; ``uniform`` takes the chunk nearest each of its N evenly spaced times."""
        ordered = sorted(refs, key=lambda c: c.first_pts)
        if not ordered:
            return []
        if self.kind == "uniform":
            near = {(c := min(ordered, key=lambda r: r.gap(t))).cid: c for t in self.targets(ordered)}
            return sorted(near.values(), key=lambda c: c.first_pts)
        kept, used = [], 0
        for c in reversed(ordered):
            if used + c.tokens > budget_tokens:
                break
            kept.append(c)
            used += c.tokens
        return kept[::-1]

    def targets(self, refs: Sequence[ChunkRef]) -> list[float]:
        """``uniform``'s times: the middles of N equal shares of the stream (none for no stream)."""
        if not refs:
            return []
        a, b = refs[0].first_pts, max(r.last_pts for r in refs)
        n = self.frames
        return [a + (k + 0.5) * (b - a) / n for k in range(n)]

    def frames_of(self, chunks: Sequence[KVChunk], targets: Sequence[float]) -> list[KVChunk]:
        """What the model reads, in time order: for ``uniform`` the frame nearest each target (one
        per frame; a chunk whose positions cannot be cut, M-RoPE, stays whole), else the chunks."""
        ordered = sorted(chunks, key=lambda c: c.first_pts)
        if self.kind != "uniform":
            return ordered
        pieces = single_frames(ordered)
        picked: dict[float, KVChunk] = {}
        for t in targets:
            if not pieces:
                break
            piece = min(pieces, key=lambda p: min(abs(f.pts - t) for f in p.frames))
            picked[piece.first_pts] = piece
        return [picked[k] for k in sorted(picked)]


def single_frames(chunks: Sequence[KVChunk]) -> list[KVChunk]:
    """Every frame of ``chunks`` as its own slice, in time order (1-D RoPE; M-RoPE chunks stay whole)."""
    ordered = sorted(chunks, key=lambda c: c.first_pts)
    return [p for c in ordered for p in (c.split_frames() if c.cuttable else [c])]
