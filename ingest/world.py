"""SceneKV's synthetic world: videos whose every scene is known, so answers can be graded.

A world video is a sequence of scenes (3-40 s). A scene is one solid background colour from the
palette and either nothing or one filled circle, square or triangle of another palette colour,
20-45 % of the frame height, static or moving linearly, always fully inside the frame. Scenes change
by hard cuts, fades through black, or dissolves (0.5-1.5 s, centred on the scene boundary); grain
and brightness jitter (<= 10 %) are optional per video. Everything is drawn from one seed, so anyone
can render the same video again, and is encoded with x264 so that SceneKV reads it back through
``open_source`` like any user file. The ground truth goes to a JSON sidecar beside the video.

Pure numpy + PyAV; no model. The phrases a world model answers with (``describe``, ``object_name``)
live here too, next to the ground truth they are computed from.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = [
    "OBJECT_NAMES",
    "PALETTE",
    "SHAPES",
    "WorldScene",
    "WorldTruth",
    "describe",
    "load_truth",
    "make_world_video",
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

    def interior_times(self, n: int, margin: float = 2.0) -> list[float]:
        """Up to ``n`` whole-second times spread over the video, each at least ``margin`` s from any
        scene boundary: times whose right answer no boundary can blur (what the graders ask about)."""
        edges = [s.start for s in self.scenes[1:]]
        pool = [t for t in range(1, int(self.duration) - 1) if all(abs(t - e) >= margin for e in edges)]
        step = max(1.0, len(pool) / n)
        return [float(pool[int(i * step)]) for i in range(min(n, len(pool)))]

    def to_json(self) -> dict:
        d = asdict(self)
        d["palette"] = {k: list(v) for k, v in PALETTE.items()}
        return d


def times_in(answer: str) -> list[int]:
    """The clock times an answer names (``at 05:41, 1:02:03`` -> [341, 3723]), for grading."""
    found = re.findall(r"(?:(\d+):)?(\d+):(\d\d)", answer)
    return [3600 * int(h or 0) + 60 * int(m) + int(s) for h, m, s in found]


def load_truth(path: str | Path) -> WorldTruth:
    """The sidecar written by :func:`make_world_video` (``VIDEO.json``, or the JSON path itself)."""
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


# -- rendering -------------------------------------------------------------------------------------
class _Painter:
    """Draws frames fast: uint8 throughout, shapes masked inside their bounding box only, grain
    from a small bank of pre-drawn noise fields."""

    def __init__(self, truth: WorldTruth, width: int, height: int) -> None:
        self.truth, self.w, self.h = truth, width, height
        jrng = random.Random(truth.seed * 7919 + 1)
        self.gain = [1.0 + jrng.uniform(-truth.jitter, truth.jitter) for _ in truth.scenes]
        self.noise: list[np.ndarray] = []
        if truth.grain:
            nrng = np.random.default_rng(truth.seed)
            sigma = 255 * truth.grain
            self.noise = [
                np.clip(nrng.normal(0.0, sigma, (height, width, 1)), -127, 127).astype(np.int16)
                for _ in range(8)
            ]
        self._count = 0

    def _colour(self, name: str, i: int) -> np.ndarray:
        return np.clip(np.array(PALETTE[name], np.float32) * self.gain[i], 0, 255).astype(np.uint8)

    def scene_image(self, i: int, t: float) -> np.ndarray:
        s = self.truth.scenes[i]
        img = np.empty((self.h, self.w, 3), np.uint8)
        img[:] = self._colour(s.background, i)
        if s.object:
            cx, cy = s.at(t, self.w, self.h)
            r = s.size * self.h / 2
            x0, x1 = max(0, int(cx - r) - 1), min(self.w, int(cx + r) + 2)
            y0, y1 = max(0, int(cy - r) - 1), min(self.h, int(cy + r) + 2)
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            mask = _mask(s.object, xx - cx, yy - cy, r)
            img[y0:y1, x0:x1][mask] = self._colour(s.object_colour, i)
        return img

    def frame(self, t: float) -> np.ndarray:
        scenes = self.truth.scenes
        i = next((k for k, s in enumerate(scenes) if t < s.end), len(scenes) - 1)
        img = self.scene_image(i, t)
        for k, tr in enumerate(self.truth.transitions):  # transition k sits between scene k and k+1
            half = tr.duration / 2
            if tr.kind == "cut" or not (tr.at - half <= t < tr.at + half):
                continue
            a = (t - (tr.at - half)) / tr.duration  # 0 -> 1 across the transition
            before = self.scene_image(k, t).astype(np.float32)
            after = self.scene_image(k + 1, t).astype(np.float32)
            if tr.kind == "dissolve":
                mixed = before * (1 - a) + after * a
            else:  # fade through black: out over the first half, in over the second
                mixed = before * (1 - 2 * a) if a < 0.5 else after * (2 * a - 1)
            img = mixed.astype(np.uint8)
            break
        if self.noise:
            self._count += 1
            img = np.clip(img + self.noise[self._count % len(self.noise)], 0, 255).astype(np.uint8)
        return img


def _mask(shape: str, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Pixels of a shape of height 2r centred at the origin (x, y are offsets from the centre)."""
    if shape == "circle":
        return x * x + y * y <= r * r
    if shape == "square":
        return (np.abs(x) <= r) & (np.abs(y) <= r)
    # upright isosceles triangle: apex at the top, base at the bottom, as wide as it is tall
    return (y >= -r) & (y <= r) & (np.abs(x) <= (y + r) / 2)


def make_world_video(
    path: str | Path,
    *,
    seed: int,
    duration: float,
    size: tuple[int, int] = (640, 360),
    fps: float = 25.0,
    preset: str = "veryfast",
    truth: WorldTruth | None = None,
) -> WorldTruth:
    """Render the world of ``seed`` to ``path`` (x264 MP4) and its ground truth to ``path``.json."""
    path = Path(path)
    width, height = size
    if width % 2 or height % 2 or width < 32 or height < 32:
        raise ValueError(f"size must be even and at least 32x32, got {width}x{height}")
    truth = truth or sample_world(seed, duration)
    truth.size, truth.fps = (width, height), fps
    painter = _Painter(truth, width, height)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    n = max(1, math.ceil(truth.duration * fps - 1e-9))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 90000)
        stream.time_base = Fraction(1, 90000)
        stream.codec_context.options = {"preset": preset, "crf": "20"}
        for number in range(n):
            t = number / fps
            frame = av.VideoFrame.from_ndarray(painter.frame(t), format="rgb24").reformat(format="yuv420p")
            frame.pts = round(t * 90000)
            frame.time_base = Fraction(1, 90000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    path.with_suffix(".json").write_text(json.dumps(truth.to_json(), indent=1) + "\n")
    return truth
