"""Where a stream's device window is cut into Redis chunks: a pure plan the coordinator executes.

While more than ``keep`` kept frames are resident, the oldest ones leave the device as a chunk of up
to ``chunk_frames`` frames, cut at scene boundaries so that every chunk belongs to exactly one scene
(compaction and captions work per scene). Planning is separate from doing so that it can be tested
alone and reasoned about without the KV, the writer or Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ChunkCut:
    frames: tuple[int, ...]  # kept frame indices, oldest first
    scene: int  # the scene they all belong to

    @property
    def first(self) -> int:
        return self.frames[0]

    @property
    def last(self) -> int:
        return self.frames[-1]


def scene_of(starts: Sequence[tuple[int, int]], index: int) -> int:
    """The scene of kept frame ``index``; ``starts`` = (first frame, scene) in time order."""
    scene = starts[0][1] if starts else 0
    for first, sc in starts:
        if first <= index:
            scene = sc
    return scene


def plan_cuts(
    resident: Sequence[int], *, keep: int, chunk_frames: int, starts: Sequence[tuple[int, int]]
) -> list[ChunkCut]:
    """The chunks to export, oldest first, until at most ``keep`` frames stay resident."""
    cuts: list[ChunkCut] = []
    left = list(resident)
    while len(left) > keep:
        boundary = next((first for first, _ in starts if first > left[0]), None)
        take = [f for f in left[:chunk_frames] if boundary is None or f < boundary]
        cuts.append(ChunkCut(tuple(take), scene_of(starts, take[0])))
        left = left[len(take) :]
    return cuts
