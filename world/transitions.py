"""Clips with known edits (hard cuts, fades, dissolves, wipes) and flashes, for scene-cut tests and
``bench/scenes.py``.

Scene detectors differ most on gradual transitions: a dissolve at 1 frame per second is two or three
half-changed frames, which a frame-difference detector may find no deeper than motion. These clips
put every kind side by side in one file with exact times. Each scene is one *look*, drawn from a
seed: a drifting coloured wave texture, a world-style solid background with a moving shape, or a
pan over a blocky texture with a colour cast; neighbouring scenes always differ in colour. A
``flash`` (frames pushed towards white, then back to the same scene) is no boundary: a detector that
cuts there is wrong. Pure numpy + PyAV, x264 like a user's file.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scenekv.world.render import check_size, shape_mask, write_x264
from scenekv.world.truth import PALETTE, SHAPES

__all__ = ["Edit", "GRADUAL", "load_edits", "make_transition_video", "plan_edits"]

KINDS = ("cut", "fade", "dissolve", "wipe")
GRADUAL = ("fade", "dissolve", "wipe")
LOOKS = ("waves", "shape", "pan")
_COLOURS = [c for c in PALETTE if c not in ("white", "black")]


@dataclass(frozen=True)
class Edit:
    """One edit: a boundary (cut, fade, dissolve, wipe) or a flash (no boundary), in seconds."""

    kind: str
    start: float  # a cut's time; where a transition or flash starts
    end: float  # where it ends (== start for a cut)

    @property
    def boundary(self) -> bool:
        return self.kind != "flash"


def plan_edits(
    seed: int,
    duration: float,
    *,
    kinds: Sequence[str] = KINDS,
    min_scene: float = 5.0,
    max_scene: float = 12.0,
    flashes: int = 1,
    fps: float = 25.0,
) -> list[Edit]:
    """Boundaries every ``min_scene``-``max_scene`` s, their kinds cycling through ``kinds`` (shuffled
    by the seed), plus ``flashes`` two-frame flashes inside scenes, starting on whole seconds so that
    a 1 fps sampler sees them."""
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    edits: list[Edit] = []
    t = round(rng.uniform(min_scene, max_scene), 1)
    while t < duration - min_scene:
        kind = order[len(edits) % len(order)]
        length = {"cut": 0.0, "fade": rng.uniform(0.6, 2.0), "wipe": rng.uniform(0.5, 1.5)}.get(
            kind, rng.uniform(1.0, 3.0)
        )
        edits.append(Edit(kind, t, round(t + length, 2)))
        t = round(edits[-1].end + rng.uniform(min_scene, max_scene), 1)
    ends, starts = [-2.5, *(e.end for e in edits)], [*(e.start for e in edits), duration]
    quiet = [(a + 2.5, b - 2.5) for a, b in zip(ends, starts, strict=True) if b - a > 6.0]  # 2.5 s clear
    for a, b in rng.sample(quiet, min(flashes, len(quiet))):
        at = float(math.floor(rng.uniform(a, b)))
        edits.append(Edit("flash", at, round(at + 2 / fps, 4)))
    return sorted(edits, key=lambda e: e.start)


def load_edits(path: str | Path) -> list[Edit]:
    """The edits of a clip from its JSON sidecar (``VIDEO.json`` or the JSON path itself)."""
    path = Path(path)
    data = json.loads(path.with_suffix(".json").read_text())
    return [Edit(**e) for e in data["edits"]]


def make_transition_video(
    path: str | Path,
    *,
    edits: Sequence[Edit],
    duration: float,
    fps: float = 25.0,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    colours: Sequence[str] | None = None,
    preset: str = "veryfast",
) -> Path:
    """Render a clip whose scenes change at ``edits`` to an x264 MP4, with a JSON sidecar of them.

    ``colours``: the palette colours scenes may take (default: all but white and black). Neighbouring
    scenes differ in colour, or with one colour allowed, in kind of look: then the colour histogram
    moves far less at a boundary and the model's features must find it."""
    path = Path(path)
    width, height = check_size(size)
    for e in edits:
        if e.kind not in (*KINDS, "flash") or e.end < e.start or (e.kind == "cut") != (e.end == e.start):
            raise ValueError(f"bad edit {e}")
    boundaries = sorted((e for e in edits if e.boundary), key=lambda e: e.start)
    flashes = [e for e in edits if not e.boundary]
    rng = random.Random(seed)
    palette = list(colours or _COLOURS)
    looks: list[_Look] = []
    for _ in range(len(boundaries) + 1):
        colour = rng.choice([c for c in palette if not looks or c != looks[-1].colour or len(palette) == 1])
        kinds = [k for k in LOOKS if not looks or colour != looks[-1].colour or k != looks[-1].kind]
        looks.append(_Look(rng.choice(kinds), colour, rng, width, height))

    def frame_at(t: float) -> np.ndarray:
        img = _frame(t, looks, boundaries)
        if any(f.start <= t < f.end for f in flashes):  # a flash: the picture washed towards white
            img = (img.astype(np.float32) * 0.25 + 0.75 * 255).astype(np.uint8)
        return img

    write_x264(path, frame_at, duration=duration, fps=fps, size=size, preset=preset)
    sidecar = {"duration": duration, "fps": fps, "size": list(size), "seed": seed}
    sidecar["edits"] = [asdict(e) for e in sorted(edits, key=lambda e: e.start)]
    sidecar["looks"] = [f"{look.kind} {look.colour}" for look in looks]
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    return path


def _frame(t: float, looks: list[_Look], boundaries: list[Edit]) -> np.ndarray:
    k = sum(1 for e in boundaries if t >= e.end)  # scenes wholly before t
    e = boundaries[k] if k < len(boundaries) else None
    if e is None or t < e.start:
        return looks[k].image(t)
    a = (t - e.start) / (e.end - e.start)  # 0 -> 1 across the transition
    before, after = looks[k].image(t).astype(np.float32), looks[k + 1].image(t).astype(np.float32)
    if e.kind == "dissolve":
        mixed = before * (1 - a) + after * a
    elif e.kind == "fade":  # through black: out over the first half, in over the second
        mixed = before * (1 - 2 * a) if a < 0.5 else after * (2 * a - 1)
    else:  # wipe: the next scene slides in from the left edge
        mixed = before
        mixed[:, : int(round(a * before.shape[1]))] = after[:, : int(round(a * before.shape[1]))]
    return np.clip(mixed, 0, 255).astype(np.uint8)


class _Look:
    """One scene's appearance over time."""

    def __init__(self, kind: str, colour: str, rng: random.Random, width: int, height: int) -> None:
        self.kind, self.colour, self.w, self.h = kind, colour, width, height
        self.rgb = np.array(PALETTE[colour], np.float32)
        nrng = np.random.default_rng(rng.randrange(1 << 30))
        if kind == "waves":
            self.period = max(16, width // 5)
            a, b, c, d = (rng.randint(1, 3) for _ in range(4))
            p = self.period
            y, x = np.mgrid[0 : height + p, 0 : width + p].astype(np.float32)
            wave = (
                np.sin(2 * np.pi * (a * x + b * y) / p) * 0.35
                + np.sin(2 * np.pi * (c * x - d * y) / p) * 0.25
            )
            self.tile = np.clip((0.55 + wave)[..., None] * self.rgb, 0, 255).astype(np.uint8)
            self.speed = (width / 20, width / 33)
        elif kind == "pan":
            block = max(4, width // 40)
            grey = nrng.integers(0, 256, (height // block + 2, 2 * width // block + 2, 1)).astype(np.float32)
            texture = np.kron(grey, np.ones((block, block, 1), np.float32))
            self.tile = np.clip(texture * 0.5 + self.rgb * 0.5, 0, 255).astype(np.uint8)
            self.speed = (width / 40 * rng.choice((1, -1)), 0.0)
        else:
            self.shape = rng.choice(SHAPES)
            self.fill = np.array(PALETTE[rng.choice([c for c in PALETTE if c != colour])], np.uint8)
            self.r = rng.uniform(0.15, 0.25) * height
            self.path = [rng.uniform(0.3, 0.7) for _ in range(2)] + [
                rng.uniform(-0.02, 0.02) for _ in range(2)
            ]

    def image(self, t: float) -> np.ndarray:
        w, h = self.w, self.h
        if self.kind == "waves":
            p = self.period
            dx, dy = int(self.speed[0] * t) % p, int(self.speed[1] * t) % p
            return self.tile[dy : dy + h, dx : dx + w]
        if self.kind == "pan":
            room = self.tile.shape[1] - w
            x = int(self.speed[0] * t) % (2 * room)
            x = x if x < room else 2 * room - x  # back and forth
            return self.tile[:h, x : x + w]
        img = np.empty((h, w, 3), np.uint8)
        img[:] = self.rgb.astype(np.uint8)
        u, v, du, dv = self.path
        cx = min(1.0, max(0.0, u + du * t)) * (w - 2 * self.r) + self.r
        cy = min(1.0, max(0.0, v + dv * t)) * (h - 2 * self.r) + self.r
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        img[shape_mask(self.shape, xx - cx, yy - cy, self.r)] = self.fill
        return img
