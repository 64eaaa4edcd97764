"""Hand-made KV chunks for planning tests: 1-D RoPE, one frame a second, zeros for keys and values."""

from __future__ import annotations

import torch

from scenekv.qa.context import ChunkRef
from scenekv.vlm.kv import FrameSpan, KVChunk

PER_FRAME = 4


def chunk(cid_first: float, n: int) -> KVChunk:
    """A 1-D RoPE chunk of ``n`` frames at 1 fps from ``cid_first`` s, ``PER_FRAME`` tokens each."""
    frames = [FrameSpan(int(cid_first) + i, cid_first + i, i * PER_FRAME, PER_FRAME) for i in range(n)]
    shape = (1, 1, n * PER_FRAME, 2)
    return KVChunk(torch.zeros(shape), torch.zeros(shape), 100, frames)


def ref(cid: str, c: KVChunk) -> ChunkRef:
    return ChunkRef(cid, c.first_pts, c.last_pts, c.tokens, len(c.frames))
