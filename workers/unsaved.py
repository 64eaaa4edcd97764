"""Pushed frames the encoder has taken but Redis does not hold yet, kept so a dead encoder loses none.

The encoder keeps its newest frames on the device and writes them to Redis only as they leave the
window (memory/rolling.py), so up to ``window`` encoded frames live nowhere else. A push client has
already been told they are encoded; if the encoder dies they would be gone. The service keeps each
pushed frame here until Redis's stored ``last_pts`` passes it, and replays what is newer than that
when the restarted encoder re-opens the stream. Bounded in bytes per stream: past the bound the
oldest frame is dropped (and counted), which only matters if Redis falls that far behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import numpy as np

log = logging.getLogger(__name__)


class UnsavedFrames:
    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self.frames: deque[tuple[float, np.ndarray]] = deque()
        self.bytes = 0
        self.dropped = 0
        self.replay = False  # the encoder re-opened the stream: send after(replay_after) first
        self.replay_after: float | None = None
        # the stream's lock: one pusher at a time (frames reach the encoder in order), and attach,
        # end and release of the stream wait for it. An asyncio lock: every caller is a coroutine
        # of the service's event loop (made on first use, so on that loop)
        self._lock: asyncio.Lock | None = None
        self.pushes = 0  # frames added so far

    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def add(self, pts: float, image: np.ndarray) -> None:
        """Remember a frame (a retry of the newest one replaces it rather than adding it twice)."""
        self.pushes += 1
        if self.frames and pts == self.frames[-1][0]:
            self.bytes -= self.frames.pop()[1].nbytes
        self.frames.append((pts, image))
        self.bytes += image.nbytes
        while self.bytes > self.max_bytes and len(self.frames) > 1:
            self.bytes -= self.frames.popleft()[1].nbytes
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning(
                    "%d pushed frame(s) not yet in Redis were dropped from the replay copy (over %d MiB): "
                    "an encoder death now would lose them",
                    self.dropped,
                    self.max_bytes >> 20,
                )

    def discard(self, pts: float) -> None:
        """The encoder refused this frame: it must never be replayed."""
        kept = [f for f in self.frames if f[0] != pts]
        if len(kept) != len(self.frames):
            self.frames = deque(kept)
            self.bytes = sum(f[1].nbytes for f in kept)

    def drop_after(self, pts: float | None) -> None:
        """Frames after ``pts`` were refused to the client (it re-sends them): forget them."""
        while self.frames and (pts is None or self.frames[-1][0] > pts):
            self.bytes -= self.frames.pop()[1].nbytes

    def saved_through(self, pts: float | None) -> None:
        """Redis holds every frame up to ``pts``: forget those."""
        if pts is None:
            return
        while self.frames and self.frames[0][0] <= pts:
            self.bytes -= self.frames.popleft()[1].nbytes

    def after(self, pts: float | None) -> list[tuple[float, np.ndarray]]:
        return [f for f in self.frames if pts is None or f[0] > pts]

    def __len__(self) -> int:
        return len(self.frames)
