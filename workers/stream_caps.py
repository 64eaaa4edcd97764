"""How many streams of each kind one service keeps open at once: a client cannot exhaust it.

Each open stream holds something scarce: a push stream a device KV window, a lease and up to
64 MiB of unsaved frames; a file or URL stream a decoder process as well, and a live URL decodes
until it is released. So ``start_stream`` reserves a place of its kind first (refused with
``too_many_streams`` when full) and gives it back when the stream ends, is released idle, or its
file has been read to the end (its decoder is reclaimed then).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from scenekv.errors import UserError

KINDS = ("push", "file", "live")


class TooManyStreams(UserError):
    code = "too_many_streams"


@dataclass(frozen=True)
class StreamCaps:
    push: int = 64  # push streams open
    file: int = 8  # files being decoded
    live: int = 8  # live URLs (cameras, HLS, RTMP) being decoded


class StreamSlots:
    """The places taken, by kind (thread-safe: the gateway calls the service from many threads)."""

    def __init__(self, caps: StreamCaps | None = None) -> None:
        self.caps = caps  # None: no caps (a library user or a benchmark; `scenekv serve` sets them)
        self._held: dict[str, str] = {}  # sid -> kind
        self._lock = threading.Lock()

    def take(self, sid: str, kind: str) -> bool:
        """Hold a place of ``kind`` for ``sid``: True if taken now, False if ``sid`` holds one
        already (TooManyStreams when they are all taken)."""
        cap = getattr(self.caps, kind) if self.caps is not None else None
        with self._lock:
            if sid in self._held:
                return False
            if cap is not None and sum(1 for k in self._held.values() if k == kind) >= cap:
                raise TooManyStreams(
                    f"this server already has {cap} {kind} streams open; end one or try later"
                )
            self._held[sid] = kind
            return True

    def kind(self, sid: str) -> str | None:
        with self._lock:
            return self._held.get(sid)

    def give_back(self, sid: str) -> None:
        with self._lock:
            self._held.pop(sid, None)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {kind: sum(1 for k in self._held.values() if k == kind) for kind in KINDS}
