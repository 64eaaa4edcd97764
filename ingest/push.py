"""A source fed by someone else: the web layer pushes frames (arrays or JPEG/PNG bytes) as they arrive.

It follows the live-source contract: the same slot rule at ``fps``, the same bounded queue that keeps
the newest frames and counts drops, so a browser sending 30 fps to a 1 fps pipeline (or a consumer
stalling) never builds up lag. ``push`` never blocks; it is safe to call from any thread. ``pts`` are
the pusher's seconds, used as given (not rebased); they must not go backwards.
"""

from __future__ import annotations

import io
import math
import threading
import time

import numpy as np

from .base import Frame, Source, SourceStats
from .errors import InvalidImage, SourceClosed
from .latest import Closed, LatestQueue
from .sampling import Resize, Sampler

# Encoded images larger than this are refused before decoding (a 16 Mpx RGB frame is 48 MB; PIL's
# own bomb guard only warns at 89 Mpx and refuses at 179 Mpx).
MAX_PIXELS = 4096 * 4096


class PushSource(Source):
    """Frames handed in with :meth:`push`, iterated like any other source until :meth:`close`."""

    live = True

    def __init__(
        self,
        *,
        fps: float | None = 1.0,
        size: tuple[int, int] | None = None,
        max_side: int | None = None,
        queue_size: int = 2,
        name: str = "push",
    ) -> None:
        self.name = name
        self.fps = fps
        self.resize = Resize(size=size, max_side=max_side)
        self.stats = SourceStats(method="push")
        self._sampler = Sampler(fps, origin=None)
        self._queue: LatestQueue[Frame] = LatestQueue(queue_size)
        self._lock = threading.Lock()
        self._index = 0
        self._last_pts: float | None = None

    def push(self, pts: float, image: np.ndarray | bytes | bytearray | memoryview) -> bool:
        """Offer one frame at ``pts`` seconds. Returns True if it was kept by the sampler.

        ``image``: an HxWx3 RGB (or HxWx4 RGBA, or HxW gray) uint8 array, or encoded JPEG/PNG bytes
        (EXIF orientation applied). Raises :class:`InvalidImage` for anything else and
        :class:`SourceClosed` after :meth:`close`.
        """
        if self._queue.closed:
            raise SourceClosed(f"{self.name}: cannot push after close()")
        try:
            pts = float(pts)
        except (TypeError, ValueError):
            raise InvalidImage(f"{self.name}: pts must be a number of seconds, got {pts!r}") from None
        if not math.isfinite(pts):
            raise InvalidImage(f"{self.name}: pts must be finite, got {pts}")
        with self._lock:
            if self._last_pts is not None and pts < self._last_pts:
                raise InvalidImage(f"{self.name}: pts went backwards ({pts} after {self._last_pts})")
            self._last_pts = pts
            self.stats.duration = round(
                pts - (self._sampler.origin if self._sampler.origin is not None else pts), 6
            )
            if not self._sampler.want(pts):
                return False
            started = time.perf_counter()
            array = _to_rgb_array(image, self.name)
            array = _resize(array, self.resize)
            self._sampler.take(pts)
            frame = Frame(index=self._index, pts=round(pts, 6), image=array)
            self._index += 1
            self.stats.decode_s += time.perf_counter() - started
            if not self._queue.put(frame) and not self._queue.closed:
                self.stats.dropped += 1
            return True

    def __next__(self) -> Frame:
        try:
            frame, waited = self._queue.get()
        except Closed:
            raise StopIteration from None
        self.stats.frames += 1
        self.stats.lag_s = round(waited, 6)
        return frame

    def close(self) -> None:
        """End the stream: frames already queued are still delivered, then iteration stops."""
        if hasattr(self, "_queue"):
            self._queue.close()


def _to_rgb_array(image, name: str) -> np.ndarray:
    if isinstance(image, bytes | bytearray | memoryview):
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(bytes(image))) as img:  # reads the header only
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise InvalidImage(
                        f"{name}: image is {w}x{h} = {w * h / 1e6:.0f} Mpx; at most "
                        f"{MAX_PIXELS / 1e6:.1f} Mpx is accepted (it is not decoded)"
                    )
                img = ImageOps.exif_transpose(img)
                return np.asarray(img.convert("RGB"))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InvalidImage(
                f"{name}: image is too large to decode ({exc}); "
                f"at most {MAX_PIXELS / 1e6:.1f} Mpx is accepted"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InvalidImage(f"{name}: image bytes are not a readable JPEG/PNG ({exc})") from None
    if not isinstance(image, np.ndarray):
        raise InvalidImage(
            f"{name}: image must be a numpy array or JPEG/PNG bytes, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise InvalidImage(f"{name}: image array must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise InvalidImage(f"{name}: image array must be HxWx3 RGB (or HxWx4, HxW), got shape {image.shape}")
    return np.array(image[:, :, :3], copy=True)  # the pusher may reuse its buffer


def _resize(image: np.ndarray, resize: Resize) -> np.ndarray:
    h, w = image.shape[:2]
    out_w, out_h = resize.output(w, h)
    if (out_w, out_h) == (w, h):
        return image
    from PIL import Image

    return np.asarray(
        Image.fromarray(image).resize((out_w, out_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    )
