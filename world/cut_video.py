"""Synthetic test media made with PyAV's encoders.

Tests, benchmarks and demos need videos whose ground truth is known: frame times, scene cuts,
rotation, GOP, start time. Each scene is a distinct colour and a distinct 2-D wave pattern that drifts
slowly, so a scene detector sees clear cuts while frames inside a scene are similar but not identical.
Every frame also carries its frame number as a 16-bit binary code in the top strip (white cell = 1),
which :func:`read_frame_number` reads back from a decoded RGB image: tests use it to check that the
frame returned for a timestamp is really the frame shown at that time.

Frames are built directly in YUV 4:2:0 from pre-rendered periodic tiles (one slice + one copy per
frame), so generating a 20-minute 720p file is bounded by the encoder, not by numpy.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["make_video", "make_audio", "frame_times", "read_frame_number", "scene_at", "CODE_BITS"]

CODE_BITS = 16
_ENCODERS = {"h264": "libx264", "mpeg4": "mpeg4", "vp8": "libvpx", "vp9": "libvpx-vp9", "mjpeg": "mjpeg"}
_DEFAULT_CODEC = {".webm": "vp8", ".avi": "mpeg4"}
# (U, V) chroma of each scene: far apart so a colour histogram alone separates neighbouring scenes.
_PALETTE = [(90, 200), (200, 80), (60, 60), (190, 190), (128, 40), (40, 150), (220, 128), (110, 110)]


def frame_times(*, duration: float, fps: float, vfr: bool = False, seed: int = 0) -> list[float]:
    """Presentation times (seconds from the first frame) of the frames :func:`make_video` writes.

    With ``vfr`` the gap to the next frame is 0.5, 1, 1.5, 2 or 3 nominal frame intervals, chosen by a
    seeded RNG, so a test can compute the exact expected timeline.
    """
    if duration <= 0 or fps <= 0:
        raise ValueError("duration and fps must be positive")
    step = 1.0 / fps
    if not vfr:
        return [i * step for i in range(max(1, math.ceil(duration * fps - 1e-9)))]
    rng = random.Random(seed)
    times, t = [], 0.0
    while t < duration - 1e-9:
        times.append(t)
        t += step * rng.choice((0.5, 1.0, 1.0, 1.5, 2.0, 3.0))
    return times


def scene_at(t: float, cuts: Sequence[float]) -> int:
    """Index of the scene shown at time ``t`` (seconds from the first frame) given the cut times."""
    return sum(1 for c in sorted(cuts) if t >= c - 1e-9)


def make_video(
    path: str | Path,
    *,
    duration: float = 4.0,
    fps: float = 25.0,
    size: tuple[int, int] = (320, 240),
    cuts: Sequence[float] = (),
    codec: str | None = None,
    gop: int | None = None,
    start_time: float = 0.0,
    vfr: bool = False,
    rotation: int = 0,
    audio: bool = False,
    preset: str = "veryfast",
    seed: int = 0,
) -> Path:
    """Encode a synthetic video and return its path.

    ``size`` is (width, height), both even. ``cuts`` are hard-cut times in seconds from the first frame.
    ``codec``: h264 (libx264, default), mpeg4, vp8, vp9 or mjpeg; .webm defaults to vp8 and .avi to mpeg4.
    ``gop``: keyframe interval in frames (default 2 s worth); for h264 scene-cut detection is off so
    keyframes fall exactly every ``gop`` frames. ``start_time`` shifts every timestamp (the container
    then reports that start time). ``rotation`` (0/90/180/270, counter-clockwise) is written as a display
    matrix, as phones do. ``audio`` adds a mono AAC/Opus tone track. ``preset`` is x264's speed preset.
    """
    path = Path(path)
    width, height = size
    if width % 2 or height % 2 or width < 32 or height < 32:
        raise ValueError(f"size must be even and at least 32x32, got {width}x{height}")
    if rotation % 90:
        raise ValueError("rotation must be a multiple of 90 degrees")
    ext = path.suffix.lower()
    codec = codec or _DEFAULT_CODEC.get(ext, "h264")
    if codec not in _ENCODERS:
        raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(_ENCODERS)}")
    if start_time and ext == ".avi":
        raise ValueError("AVI cannot store a start time")
    if vfr and ext == ".avi":
        raise ValueError("AVI cannot store variable frame rate")
    gop = gop or max(1, round(2 * fps))
    times = frame_times(duration=duration, fps=fps, vfr=vfr, seed=seed)

    # mpeg4 caps the time base denominator at 65535; everything else gets a fine 90 kHz clock.
    if codec == "mpeg4" and not vfr:
        time_base = 1 / Fraction(fps).limit_denominator(1001)
    elif codec in ("mpeg4", "vp8", "vp9"):
        time_base = Fraction(1, 1000)
    else:
        time_base = Fraction(1, 90000)

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(_ENCODERS[codec], rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        stream.codec_context.gop_size = gop
        if codec == "h264":
            stream.codec_context.options = {"preset": preset, "x264-params": "scenecut=0", "crf": "23"}
        elif codec in ("vp8", "vp9"):
            stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8", "b": "1M"}
        elif codec in ("mpeg4", "mjpeg"):
            stream.codec_context.options = {"qscale": "4"}
            stream.codec_context.qscale = 4
        if rotation % 360:
            stream.set_display_rotation(rotation % 360)
        tone = _AudioTrack(container, ext, start_time) if audio else None

        painter = _Painter(width, height, cuts, seed)
        for number, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(painter.paint(number, t), format="yuv420p")
            if codec == "mjpeg":
                frame = frame.reformat(format="yuvj420p")
            frame.pts = round((t + start_time) / time_base)
            frame.time_base = time_base
            container.mux(stream.encode(frame))
            if tone is not None:
                tone.write_until(t + 1.0 / fps, scene_at(t, cuts))
        container.mux(stream.encode(None))
        if tone is not None:
            tone.finish()
    return path


def make_audio(path: str | Path, *, duration: float = 2.0, sample_rate: int = 16000) -> Path:
    """Write an audio-only file (a 440 Hz tone): .wav (PCM), .m4a/.mp4/.aac (AAC), .mp3, .ogg/.opus."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        track = _AudioTrack(container, path.suffix.lower(), 0.0, sample_rate=sample_rate)
        track.write_until(duration, 0)
        track.finish()
    return path


def read_frame_number(image: np.ndarray) -> int:
    """Read the frame number that :func:`make_video` drew into an upright RGB (or gray) image.

    Works on resized images too (the code is laid out in fractions of the frame). The number wraps at
    2**16 frames.
    """
    h, w = image.shape[:2]
    gray = image.mean(axis=2) if image.ndim == 3 else image
    y0, y1 = int(h * 0.03), max(int(h * 0.03) + 1, int(h * 0.09))
    value = 0
    for bit in range(CODE_BITS):
        cx = (bit + 0.5) * w / CODE_BITS
        x0, x1 = int(cx - w / 80), max(int(cx - w / 80) + 1, int(cx + w / 80))
        value = (value << 1) | int(gray[y0:y1, x0:x1].mean() > 128)
    return value


class _Painter:
    """Renders YUV 4:2:0 frames: a drifting periodic wave per scene plus the frame-number code strip."""

    def __init__(self, width: int, height: int, cuts: Sequence[float], seed: int) -> None:
        self.width, self.height = width, height
        self.cuts = sorted(cuts)
        self.period = max(16, (width // 5) // 2 * 2)
        # Pixels per second (x, y): visibly moving yet clearly the same scene; different speeds so the
        # periodic pattern does not repeat exactly for ~20 s.
        self.speed = (max(2.0, width / 20), max(1.0, width / 33))
        self.seed = seed
        self._tiles: dict[int, tuple[np.ndarray, int, int]] = {}
        self.strip = max(4, height // 8)

    def _tile(self, scene: int) -> tuple[np.ndarray, int, int]:
        if scene not in self._tiles:
            rng = random.Random(self.seed * 7919 + scene)
            p = self.period
            a, b, c, d = (rng.randint(1, 3) for _ in range(4))
            y, x = np.mgrid[0 : self.height + p, 0 : self.width + p].astype(np.float32)
            wave = np.sin(2 * np.pi * (a * x + b * y) / p) * 55 + np.sin(2 * np.pi * (c * x - d * y) / p) * 35
            if scene % 2:
                wave = np.sign(wave) * 70  # odd scenes: hard-edged blobs, even scenes: smooth waves
            luma = np.clip(126 + wave, 16, 235).astype(np.uint8)
            self._tiles[scene] = (luma, *_PALETTE[scene % len(_PALETTE)])
        return self._tiles[scene]

    def paint(self, number: int, t: float) -> np.ndarray:
        w, h, p = self.width, self.height, self.period
        scene = scene_at(t, self.cuts)
        luma, u, v = self._tile(scene)
        dx, dy = int(self.speed[0] * t) % p, int(self.speed[1] * t) % p
        out = np.empty((h * 3 // 2, w), np.uint8)
        out[:h] = luma[dy : dy + h, dx : dx + w]
        out[h:] = 128
        chroma = out[h:].reshape(-1)
        quarter = (w // 2) * (h // 2)
        chroma[:quarter].reshape(h // 2, w // 2)[:] = u
        chroma[quarter : 2 * quarter].reshape(h // 2, w // 2)[:] = v
        # Frame-number code: neutral chroma in the strip so cells are pure black/white.
        chroma[:quarter].reshape(h // 2, w // 2)[: self.strip // 2 + 1] = 128
        chroma[quarter : 2 * quarter].reshape(h // 2, w // 2)[: self.strip // 2 + 1] = 128
        bits = number % (1 << CODE_BITS)
        for bit in range(CODE_BITS):
            x0, x1 = bit * w // CODE_BITS, (bit + 1) * w // CODE_BITS
            on = (bits >> (CODE_BITS - 1 - bit)) & 1
            out[: self.strip, x0:x1] = 235 if on else 16
        return out


class _AudioTrack:
    """A mono tone whose pitch follows the scene, encoded alongside the video."""

    def __init__(self, container, ext: str, start_time: float, sample_rate: int = 48000) -> None:
        codec = {
            ".wav": "pcm_s16le",
            ".mp3": "libmp3lame",
            ".ogg": "libopus",
            ".opus": "libopus",
            ".webm": "libopus",
            ".mkv": "libopus",
        }.get(ext, "aac")
        if codec == "libopus":
            sample_rate = 48000
        self.container = container
        self.stream = container.add_stream(codec, rate=sample_rate, layout="mono")
        self.rate = sample_rate
        self.fmt = self.stream.codec_context.format.name
        self.start = round(start_time * sample_rate)
        self.written = 0
        self.chunk = self.stream.codec_context.frame_size or 1024

    def write_until(self, t: float, scene: int) -> None:
        target = round(t * self.rate)
        while self.written + self.chunk <= target:
            n = np.arange(self.written, self.written + self.chunk)
            wave = 0.3 * np.sin(2 * np.pi * (330 + 110 * scene) * n / self.rate)
            if self.fmt.startswith("s16"):
                data = (wave * 32767).astype(np.int16)[None, :]
            elif self.fmt.startswith("s32"):
                data = (wave * 2147483647).astype(np.int32)[None, :]
            else:
                data = wave.astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(data, format=self.fmt, layout="mono")
            frame.sample_rate = self.rate
            frame.pts = self.start + self.written
            frame.time_base = Fraction(1, self.rate)
            self.container.mux(self.stream.encode(frame))
            self.written += self.chunk

    def finish(self) -> None:
        self.container.mux(self.stream.encode(None))
