"""The synthetic world's ground truth: what every scene of a world video shows, drawn from one seed.

A world video is a sequence of scenes (3-40 s). A scene is one solid background colour from the
palette and either nothing or one filled circle, square or triangle of another palette colour,
20-45 % of the frame height, static or moving linearly, always fully inside the frame. Scenes change
by hard cuts, fades through black, or dissolves (0.5-1.5 s, centred on the scene boundary); grain
and brightness jitter (<= 10 %) are optional per video. Everything is drawn from one seed, so anyone
can render the same video again (:mod:`scenekv.world.render`); the truth goes to a JSON sidecar.

The phrases a world model answers with (``describe``, ``object_name``) live here, next to the
ground truth they are computed from, so that answers can be graded.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "OBJECT_NAMES",
    "PALETTE",
    "SHAPES",
    "WorldScene",
    "WorldTruth",
    "describe",
    "load_truth",
    "sample_world",
]

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 70),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
    "orange": (245, 140, 30),
    "purple": (140, 60, 190),
}
SHAPES = ("circle", "square", "triangle")
OBJECT_NAMES = tuple(f"{c} {s}" for c in PALETTE for s in SHAPES)  # "purple triangle", ...
TRUTH_VERSION = 1


@dataclass(frozen=True)
class WorldScene:
    start: float
    end: float
    background: str
    object: str | None = None  # circle | square | triangle | None
    object_colour: str | None = None
    size: float = 0.0  # object height as a fraction of the frame height
    # where the object's centre goes, as fractions (0..1) of the room it has to move in: start u, v
    # -> end u, v. Resolved against the frame's aspect at render time, so it fits any frame size.
    path: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 0.5)

    @property
    def object_name(self) -> str:
        """``purple triangle`` or ``nothing``: the answer to "what shape is on screen?"."""
        return f"{self.object_colour} {self.object}" if self.object else "nothing"

    def describe(self) -> str:
        return describe(self.background, self.object, self.object_colour)

    def at(self, t: float, width: int, height: int) -> tuple[float, float]:
        """Object centre in pixels at time ``t`` of this scene, the object wholly inside the frame."""
        span = max(self.end - self.start, 1e-9)
        a = min(1.0, max(0.0, (t - self.start) / span))
        u0, v0, u1, v1 = self.path
        half = self.size * height / 2 + 1  # the object is as wide as it is tall
        room_x, room_y = max(0.0, width - 2 * half), max(0.0, height - 2 * half)
        return half + room_x * (u0 + (u1 - u0) * a), half + room_y * (v0 + (v1 - v0) * a)


def describe(background: str, obj: str | None, colour: str | None) -> str:
    """``purple triangle on yellow`` or ``yellow background``: a scene caption / "what is on screen"."""
    return f"{colour} {obj} on {background}" if obj else f"{background} background"


@dataclass(frozen=True)
class Transition:
    at: float  # the scene boundary (centre of a fade or dissolve)
    kind: str  # cut | fade | dissolve
    duration: float = 0.0


@dataclass
class WorldTruth:
    seed: int
    duration: float
    scenes: list[WorldScene]
    transitions: list[Transition]
    grain: float = 0.0  # noise standard deviation, fraction of full scale
    jitter: float = 0.0  # per-scene brightness change bound, fraction
    size: tuple[int, int] = (640, 360)
    fps: float = 25.0
    version: int = TRUTH_VERSION
    extra: dict = field(default_factory=dict)

    def scene_at(self, t: float) -> WorldScene:
        for s in self.scenes:
            if t < s.end:
                return s
        return self.scenes[-1]

    def to_json(self) -> dict:
        d = asdict(self)
        d["palette"] = {k: list(v) for k, v in PALETTE.items()}
        return d


def load_truth(path: str | Path) -> WorldTruth:
    """The sidecar written by :func:`scenekv.world.render.make_world_video` (``VIDEO.json``, or the
    JSON path itself)."""
    path = Path(path)
    if path.suffix != ".json":
        path = path.with_suffix(".json")
    d = json.loads(path.read_text())
    d.pop("palette", None)
    d["scenes"] = [WorldScene(**{**s, "path": tuple(s["path"])}) for s in d["scenes"]]
    d["transitions"] = [Transition(**t) for t in d["transitions"]]
    d["size"] = tuple(d["size"])
    return WorldTruth(**d)


def sample_world(
    seed: int,
    duration: float,
    *,
    min_scene: float = 3.0,
    max_scene: float = 40.0,
    p_empty: float = 0.25,
    p_moving: float = 0.5,
    p_soft: float = 0.2,
    effects: bool | None = None,
) -> WorldTruth:
    """Draw a world timeline of ``duration`` seconds from ``seed`` (no rendering).

    Neighbouring scenes always differ in background, so every boundary is visible. ``effects``
    (default: by the seed) turns grain and brightness jitter on.
    """
    if duration < min_scene:
        raise ValueError(f"a world video needs at least {min_scene:g} s")
    rng = random.Random(seed)
    bounds = [0.0]
    while duration - bounds[-1] > max_scene:
        bounds.append(bounds[-1] + round(rng.uniform(min_scene, max_scene), 1))
    if duration - bounds[-1] < min_scene and len(bounds) > 1:
        bounds.pop()  # the tail joins the previous scene (which may then exceed max_scene a little)
    bounds.append(duration)
    names = list(PALETTE)
    scenes: list[WorldScene] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        background = rng.choice([n for n in names if not scenes or n != scenes[-1].background])
        if rng.random() < p_empty:
            scenes.append(WorldScene(a, b, background))
            continue
        shape = rng.choice(SHAPES)
        colour = rng.choice([n for n in names if n != background])
        size = rng.uniform(0.20, 0.45)
        path = _path(rng, moving=rng.random() < p_moving)
        scenes.append(WorldScene(a, b, background, shape, colour, round(size, 3), path))
    transitions = []
    for s in scenes[1:]:
        if rng.random() < p_soft:
            transitions.append(
                Transition(s.start, rng.choice(("fade", "dissolve")), round(rng.uniform(0.5, 1.5), 2))
            )
        else:
            transitions.append(Transition(s.start, "cut"))
    if effects is None:
        effects = rng.random() < 0.5
    grain = round(rng.uniform(0.0, 0.04), 3) if effects else 0.0
    jitter = round(rng.uniform(0.0, 0.10), 3) if effects else 0.0
    return WorldTruth(seed, duration, scenes, transitions, grain, jitter)


def _path(rng: random.Random, *, moving: bool) -> tuple[float, float, float, float]:
    u0, v0 = rng.random(), rng.random()
    u1, v1 = (rng.random(), rng.random()) if moving else (u0, v0)
    return tuple(round(v, 4) for v in (u0, v0, u1, v1))
