"""The types every source shares: :class:`Frame`, :class:`SourceStats` and the :class:`Source` interface.

A source is an iterator of frames that must be closed (it may own a decoder, a socket and a thread);
use it as a context manager. Sources are single-pass: iterate once.
"""

from __future__ import annotations

import contextlib
import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One sampled frame.

    ``index`` counts sampled frames from 0; for live and push sources a gap in ``index`` means frames
    were dropped because the consumer was slower than the source. ``pts`` is the presentation time in
    seconds (see the package docstring for the origin). ``image`` is RGB uint8, shape (height, width, 3),
    upright (rotation metadata applied).
    """

    index: int
    pts: float
    image: np.ndarray

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(slots=True)
class SourceStats:
    """Counters a caller can show or export; updated while the source is iterated.

    ``frames``: frames delivered. ``dropped``: sampled frames discarded because the consumer lagged
    (live/push only). ``bad_packets``: packets that failed to demux or decode and were skipped.
    ``duration``: seconds of the source's timeline read so far (the media duration once a file is read
    to its end). ``decode_s``: seconds spent demuxing, decoding, and converting frames (for live sources
    excluding time spent waiting for the network). ``reconnects``: successful live reconnections.
    ``method``: the decode method actually used. ``lag_s``: how long the last delivered frame waited
    in the live queue. ``error``: why a live source ended early, if it did.
    """

    frames: int = 0
    dropped: int = 0
    bad_packets: int = 0
    duration: float = 0.0
    decode_s: float = 0.0
    reconnects: int = 0
    method: str = ""
    lag_s: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(d.pop("extra"))
        return d


class Source(ABC):
    """An iterable, closeable stream of :class:`Frame` objects with :attr:`stats`.

    ``start_time`` is the absolute time (seconds, in the stream's own clock) that ``pts == 0`` stands
    for, when known; ``live`` says whether the source is a live stream (bounded queue, reconnects).
    """

    stats: SourceStats
    start_time: float | None = None
    live: bool = False
    name: str = ""

    def __iter__(self) -> Source:
        return self

    @abstractmethod
    def __next__(self) -> Frame: ...

    @abstractmethod
    def close(self) -> None:
        """Release decoders, sockets and threads; safe to call twice and from another thread."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: best effort only
            self.close()
