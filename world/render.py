"""Render a world timeline (:mod:`scenekv.world.truth`) to an x264 MP4 and its JSON ground truth.

Encoded like a user's file so that SceneKV reads it back through ``open_source``, with the codec's
losses, rather than from clean arrays. Pure numpy + PyAV; no model.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from scenekv.world.truth import PALETTE, WorldTruth, sample_world

__all__ = ["make_world_video", "shape_mask"]


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
            mask = shape_mask(s.object, xx - cx, yy - cy, r)
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


def shape_mask(shape: str, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Pixels of a shape of height 2r centred at the origin (x, y are offsets from the centre)."""
    if shape == "circle":
        return x * x + y * y <= r * r
    if shape == "square":
        return (np.abs(x) <= r) & (np.abs(y) <= r)
    # upright isosceles triangle: apex at the top, base at the bottom, as wide as it is tall
    return (y >= -r) & (y <= r) & (np.abs(x) <= (y + r) / 2)


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """``size`` if x264's 4:2:0 takes it (even sides) and the world's shapes fit (32 px); else ValueError."""
    width, height = size
    if width % 2 or height % 2 or width < 32 or height < 32:
        raise ValueError(f"size must be even and at least 32x32, got {width}x{height}")
    return width, height


def write_x264(
    path: Path,
    frame_at: Callable[[float], np.ndarray],
    *,
    duration: float,
    fps: float,
    size: tuple[int, int],
    preset: str,
) -> None:
    """An x264 MP4 of ``frame_at(t)`` (RGB) at ``fps`` for ``duration`` s, exact pts on a 90 kHz clock."""
    width, height = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 90000)
        stream.time_base = Fraction(1, 90000)
        stream.codec_context.options = {"preset": preset, "crf": "20"}
        for number in range(max(1, math.ceil(duration * fps - 1e-9))):
            t = number / fps
            frame = av.VideoFrame.from_ndarray(frame_at(t), format="rgb24").reformat(format="yuv420p")
            frame.pts = round(t * 90000)
            frame.time_base = Fraction(1, 90000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


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
    width, height = check_size(size)
    truth = truth or sample_world(seed, duration)
    truth.size, truth.fps = (width, height), fps
    painter = _Painter(truth, width, height)
    write_x264(path, painter.frame, duration=truth.duration, fps=fps, size=size, preset=preset)
    path.with_suffix(".json").write_text(json.dumps(truth.to_json(), indent=1) + "\n")
    return truth
