"""Ingest: open any video source and get sampled, upright RGB frames with exact timestamps.

Public API (stable; later layers call exactly these)::

    from scenekv.ingest import open_source, Frame

    with open_source("talk.mp4", fps=1.0, max_side=384) as src:   # or rtsp://, http(s)://, udp://...
        for frame in src:              # Frame(index, pts, image); image is HxWx3 uint8 RGB
            ...
        print(src.stats.as_dict())     # frames, dropped, bad_packets, duration, decode_s, ...

- ``open_source(source, *, fps=1.0, size=None, max_side=None, method="auto", timeout=5.0, live=None,
  queue_size=2, reconnect=None, options=None) -> Source``
- ``Source``: iterator of :class:`Frame`, ``close()``, context manager, ``.stats`` (:class:`SourceStats`),
  ``.start_time``, ``.live``.
- ``images.decode_image(data, *, max_side=VISION_MAX_SIDE, max_pixels=...)``: a pushed JPEG / PNG / WebP frame
  to an upright RGB array (EXIF orientation applied), refusing what a server must not decode.
- ``Reconnect(initial, factor, max_delay, max_attempts, give_up_after)``: live backoff policy.
- Errors: subclasses of :class:`scenekv.errors.UserError` in :mod:`scenekv.ingest.errors`.

Timestamps: ``pts`` is seconds on the media's own timeline, ``frame.pts * time_base`` minus the
container's start time, so the first frame of a file is at (about) 0 even when the file starts at
10 s, matching what players show and what ``ffmpeg -ss`` means. ``source.start_time`` holds that
offset. For live sources pts 0 is the first frame received (see :mod:`scenekv.ingest.live`); pushed
frames keep the pusher's pts (the web layer checks them).

Sampling at ``fps`` keeps, for each slot ``k / fps``, the first frame whose pts is at or after it,
never two frames for one slot (see :mod:`scenekv.ingest.sampling`). Only kept frames are converted
to RGB. Rotation metadata (display matrix) is applied; size options refer to the upright frame.

This package imports nothing heavy at import time (names are loaded on first use), so the CLI's
``--help`` stays instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Frame, Source, SourceStats
    from .errors import DamagedMediaWarning, IngestError, SourceLostWarning
    from .live import Reconnect
    from .source import open_source

_EXPORTS = {
    "Frame": "base",
    "Source": "base",
    "SourceStats": "base",
    "open_source": "source",
    "Reconnect": "live",
    "IngestError": "errors",
    "DamagedMediaWarning": "errors",
    "SourceLostWarning": "errors",
}

__all__ = [
    "DamagedMediaWarning",
    "Frame",
    "IngestError",
    "Reconnect",
    "Source",
    "SourceLostWarning",
    "SourceStats",
    "open_source",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
