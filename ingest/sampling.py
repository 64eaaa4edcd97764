"""Which frames to keep (the slot rule), at what size, and how to turn them into upright RGB arrays.

Slot rule: with a target rate F the timeline is cut into slots ``origin + k/F``. A frame is kept when its
pts is at or after the next slot time; after keeping a frame at pts ``p``, every slot up to ``p`` counts
as served, so the next slot is the first one strictly after ``p``. Hence one frame per slot at most,
no frame is ever kept twice, a gap in a variable-frame-rate stream simply leaves slots empty, and every
method (decode, seek, decord) picks the same frames for the same timestamps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InvalidOption

if TYPE_CHECKING:
    import av
    import numpy as np

# Timestamps are rounded to microseconds; this absorbs float error in pts * time_base (never a frame).
EPS = 1e-6


class Sampler:
    """Applies the slot rule to a monotonically increasing sequence of pts (seconds).

    ``fps=None`` keeps every frame (still never one whose pts does not increase). ``origin`` is the time
    of slot 0.
    """

    def __init__(self, fps: float | None, origin: float = 0.0) -> None:
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise InvalidOption(f"fps must be a positive number, got {fps}")
        self.fps = fps
        self.origin = origin
        self._next_slot = 0
        self.last_kept: float | None = None
        self.kept = 0

    @property
    def next_time(self) -> float:
        """Earliest pts the next kept frame may have."""
        if self.fps is None:
            return -math.inf if self.last_kept is None else self.last_kept + EPS
        return self.origin + self._next_slot / self.fps

    def want(self, pts: float) -> bool:
        """Would a frame at ``pts`` be kept? (Does not change state.)"""
        if self.last_kept is not None and pts <= self.last_kept + EPS / 2:
            return False
        return pts >= self.next_time - EPS

    def skip_to(self, t: float) -> None:
        """Start at the first slot at or after ``t``: a range of a file samples exactly the frames a
        whole-file pass would sample there (the slot grid stays anchored at the origin)."""
        if t <= 0:
            return
        if self.fps is None:
            self.last_kept = t - EPS
            return
        self._next_slot = max(self._next_slot, math.ceil((t - self.origin) * self.fps - EPS))

    def observe(self, pts: float) -> None:
        """A frame before a range's start, decoded but not offered: after any frame at ``pts`` a
        whole-file pass waits for the first slot strictly after it, kept or not. So a range that sees
        its start's predecessor continues the one-pass sampling exactly (a slot that straddles the
        boundary is served by the first frame at or after the start)."""
        if self.fps is None:
            return
        self._next_slot = math.floor((pts - self.origin) * self.fps + EPS) + 1

    def take(self, pts: float) -> bool:
        """Offer a frame; returns True (and advances past its slot) if it is kept."""
        if not self.want(pts):
            return False
        if self.fps is not None:
            self._next_slot = math.floor((pts - self.origin) * self.fps + EPS) + 1
        self.last_kept = pts
        self.kept += 1
        return True


@dataclass(frozen=True)
class Resize:
    """Requested output size: exact ``size`` (w, h), or ``max_side`` (aspect kept, never enlarged)."""

    size: tuple[int, int] | None = None
    max_side: int | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.max_side is not None:
            raise InvalidOption("give either an exact size or a max side, not both")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise InvalidOption(f"size must be two positive integers (width, height), got {self.size}")
        if self.max_side is not None and self.max_side < 1:
            raise InvalidOption(f"max side must be a positive integer, got {self.max_side}")

    def output(self, width: int, height: int) -> tuple[int, int]:
        """Output (width, height) for an upright frame of ``width`` x ``height``."""
        if self.size is not None:
            return int(self.size[0]), int(self.size[1])
        if self.max_side is not None and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
            return max(1, round(width * scale)), max(1, round(height * scale))
        return width, height


def parse_frame_size(text: str) -> tuple[int, int]:
    """Parse ``"WxH"`` (e.g. ``640x360``) into (width, height)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m[1]) < 1 or int(m[2]) < 1:
        raise InvalidOption(f"size must look like WIDTHxHEIGHT (e.g. 640x360), got {text!r}")
    return int(m[1]), int(m[2])


def quarter_turns(rotation: float | None) -> int:
    """Counter-clockwise display rotation in degrees -> number of 90-degree turns for ``np.rot90``."""
    if not rotation:
        return 0
    return round(rotation / 90) % 4


def frame_turns(frame: av.VideoFrame) -> int:
    """Quarter turns of a decoded frame's display matrix (FFmpeg copies the stream's onto each frame)."""
    try:
        return quarter_turns(frame.rotation)
    except Exception:  # no or malformed display matrix
        return 0


def to_rgb(frame: av.VideoFrame, resize: Resize, turns: int) -> np.ndarray:
    """Convert one decoded frame to upright RGB uint8 at the requested size in a single swscale pass."""

    upright = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
    out_w, out_h = resize.output(*upright)
    coded_w, coded_h = (out_h, out_w) if turns % 2 else (out_w, out_h)
    if (coded_w, coded_h) == (frame.width, frame.height):
        image = frame.to_ndarray(format="rgb24")
    else:
        shrink = coded_w * coded_h < frame.width * frame.height
        image = frame.to_ndarray(
            format="rgb24", width=coded_w, height=coded_h, interpolation="AREA" if shrink else "BILINEAR"
        )
    return rotate(image, turns)


def rotate(image: np.ndarray, turns: int) -> np.ndarray:
    """Rotate counter-clockwise by ``turns`` quarter turns; returns a contiguous array."""
    import numpy as np

    if turns % 4 == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, turns))
