"""What graders of world-video answers share (tests/world/test_world_model.py, bench/qa.py): which times
to ask about, and which times an answer names."""

from __future__ import annotations

import re

from scenekv.world.truth import WorldTruth

__all__ = ["interior_times", "times_in"]


def interior_times(truth: WorldTruth, n: int, margin: float = 2.0) -> list[float]:
    """Up to ``n`` whole-second times spread over the video, each at least ``margin`` s from any
    scene boundary: times whose right answer no boundary can blur."""
    edges = [s.start for s in truth.scenes[1:]]
    pool = [t for t in range(1, int(truth.duration) - 1) if all(abs(t - e) >= margin for e in edges)]
    step = max(1.0, len(pool) / n)
    return [float(pool[int(i * step)]) for i in range(min(n, len(pool)))]


def times_in(answer: str) -> list[int]:
    """The clock times an answer names (``at 05:41, 1:02:03`` -> [341, 3723])."""
    found = re.findall(r"(?:(\d+):)?(\d+):(\d\d)", answer)
    return [3600 * int(h or 0) + 60 * int(m) + int(s) for h, m, s in found]
