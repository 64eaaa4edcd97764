"""Appearances from frame readings: the smoothing `when` answers with (qa/when_index.py).

Each read frame says what object and what background the model saw in it (memory/content_index.py).
Read one by one, frames are sometimes wrong, and not at random: a moving shape may be read as
another shape of its colour on a few frames in a row. Runs of raw matches (a thing appears where two
frames in a row show it) then invent appearances and split real ones.

So the readings of a stretch of stream are explained by the simplest story: a piecewise-constant
sequence of (object, background) states, chosen to minimise the readings it contradicts plus
``SWITCH_COST`` for every change of state (a Potts model, solved exactly by dynamic programming over
the states seen in the stretch). One misread frame costs 1 to keep and 2 x SWITCH_COST to cut out, so
it neither makes an appearance nor splits one; a few misreads in a row are outvoted the same way; a
real change that lasts (a new scene: object and background both change; an object that appears
mid-scene and stays) is cheaper as a change, and it starts at its own first frame, not at a scene
cut. Backgrounds, which the world model reads almost without error, pin the changes between scenes.
An appearance is a maximal run of states showing the thing asked about.

Why SWITCH_COST 2.4: on six 10-minute world videos (seeds 201-206, none a training or a benchmark
seed), strict `when` (every appearance +-2 s, nothing else) was 75 % for raw runs of two frames, 79 %
for runs allowing two misread frames between them, and 82 % for this model at switch costs from 2
to 4 (docs/benchmarks.md); 2.4 is inside that, and no whole number of frames ties with it or with
twice it. The price: an object that comes and goes within one background in four frames or fewer is
not reported, and two frames or fewer at the edge of what is read (the stream's start) are absorbed
by what follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

from scenekv.memory.content_index import OBJECT, Reading

SWITCH_COST = 2.4


@dataclass(frozen=True)
class Segment:
    start: float  # its first frame
    end: float  # the next read frame, or its last + one frame step
    object: str
    background: str
    frames: int


@dataclass(frozen=True)
class Appearance:
    start: float  # its first frame (the window's start for one that began before it)
    end: float
    frames: int


def _cost(reading: Reading, state: tuple[str, str]) -> int:
    """Readings the state contradicts; a kind not read ("") contradicts nothing."""
    obj, bg = state
    return int(bool(reading.object) and reading.object != obj) + int(
        bool(reading.background) and reading.background != bg
    )


def segments(readings: Sequence[Reading], *, step: float, switch_cost: float = SWITCH_COST) -> list[Segment]:
    """The (object, background) states that explain ``readings`` (time order) at least cost."""
    if not readings:
        return []
    objects = sorted({r.object for r in readings if r.object}) or [""]
    backgrounds = sorted({r.background for r in readings if r.background}) or [""]
    states = list(product(objects, backgrounds))
    cost = [_cost(readings[0], s) for s in states]
    back: list[list[int]] = []
    for r in readings[1:]:
        best = min(cost)
        arg = cost.index(best)
        came = [k if cost[k] <= best + switch_cost else arg for k in range(len(states))]
        cost = [min(cost[k], best + switch_cost) + _cost(r, s) for k, s in enumerate(states)]
        back.append(came)
    path = [cost.index(min(cost))]
    for came in reversed(back):
        path.append(came[path[-1]])
    path.reverse()
    out: list[Segment] = []
    for i, (r, k) in enumerate(zip(readings, path, strict=True)):
        end = readings[i + 1].pts if i + 1 < len(readings) else r.pts + step
        if out and (out[-1].object, out[-1].background) == states[k]:
            out[-1] = Segment(out[-1].start, end, *states[k], out[-1].frames + 1)
        else:
            out.append(Segment(r.pts, end, *states[k], 1))
    return out


def appearances(
    stretches: Sequence[Sequence[Reading]],
    shown: set[str],
    kind: str,
    *,
    step: float,
    window: tuple[float, float] | None = None,
) -> list[Appearance]:
    """Where the thing appears: runs of states whose object (``kind`` OBJECT) or background is one of
    ``shown``, over separate ``stretches`` of readings (each smoothed on its own), merged in time
    order; with ``window``, those overlapping it, starting no earlier than it."""
    runs: list[list[float]] = []
    for stretch in stretches:
        current: list[float] | None = None
        for seg in segments(stretch, step=step):
            if (seg.object if kind == OBJECT else seg.background) in shown:
                if current is None:
                    current = [seg.start, seg.end, 0]
                    runs.append(current)
                current[1], current[2] = seg.end, current[2] + seg.frames
            else:
                current = None
    merged: list[list[float]] = []
    for run in sorted(runs):
        if merged and run[0] <= merged[-1][1] + 1e-6:
            merged[-1][1] = max(merged[-1][1], run[1])
            merged[-1][2] += run[2]
        else:
            merged.append(list(run))
    out = []
    for start, end, frames in merged:
        if window is not None:
            if end <= window[0] + 1e-6 or start > window[1] + 1e-6:
                continue
            start = max(start, window[0])
        out.append(Appearance(start, end, int(frames)))
    return out
