"""How many streams of each kind a deployment keeps open at once, and when each was last used.

Each open stream holds something scarce: a push stream a device KV window, a lease and up to
64 MiB of unsaved frames; a file or URL stream a decoder process as well, and a live URL decodes
until it is released. So ``start_stream`` reserves a place of its kind first (refused with
``too_many_streams`` when full) and gives it back when the stream ends, is released idle, or its
file has been read to the end (its decoder is reclaimed then).

The places are kept in Redis per encoder pool (memory/schema.py ``open_stream_keys``), so a cap
holds across every gateway of a deployment, and with each stream the last time a gateway used it:
any gateway can release a stream that the one serving it left behind (it died, or was stopped).
A private pool (one process's own encoders) has keys of its own, expiring a day after its last
sweep if the process died without giving them back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scenekv.errors import UserError

if TYPE_CHECKING:
    import redis

KINDS = ("push", "file", "live")
KEPT_S = 86400  # how long the records outlive the last sweep of any gateway of the pool


class TooManyStreams(UserError):
    code = "too_many_streams"


@dataclass(frozen=True)
class StreamCaps:
    push: int = 64  # push streams open
    file: int = 8  # files being decoded
    live: int = 8  # live URLs (cameras, HLS, RTMP) being decoded


class StreamSlots:
    """The places taken on one pool, by kind, and the streams' last use (plain Redis, blocking:
    the service calls it from a thread)."""

    def __init__(
        self, client: redis.Redis, prefix: str, pool_id: str, caps: StreamCaps | None = None
    ) -> None:
        from scenekv.memory.schema import open_stream_keys  # here: `scenekv serve --help` stays light
        from scenekv.memory.scripts import TAKE_STREAM_PLACE

        self.client = client
        self.caps = caps  # None: no caps (a library user or a benchmark; `scenekv serve` sets them)
        *self._sets, self._touched = open_stream_keys(prefix, pool_id)
        self._take = client.register_script(TAKE_STREAM_PLACE)

    def take(self, sid: str, kind: str) -> bool:
        """Hold a place of ``kind`` for ``sid``: True if taken now, False if ``sid`` holds one
        already (TooManyStreams when they are all taken)."""
        cap = getattr(self.caps, kind) if self.caps is not None else 0
        got = self._take(
            keys=[*self._sets, self._touched], args=[sid, KINDS.index(kind) + 1, cap, f"{time.time():.3f}"]
        )
        if got == -1:
            raise TooManyStreams(f"this server already has {cap} {kind} streams open; end one or try later")
        return got == 1

    def kind(self, sid: str) -> str | None:
        with self.client.pipeline(transaction=False) as pipe:
            for key in self._sets:
                pipe.sismember(key, sid)
            held = pipe.execute()
        return next((k for k, h in zip(KINDS, held, strict=True) if h), None)

    def give_back(self, sid: str) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for key in self._sets:
                pipe.srem(key, sid)
            pipe.zrem(self._touched, sid)
            pipe.execute()

    def counts(self) -> dict[str, int]:
        with self.client.pipeline(transaction=False) as pipe:
            for key in self._sets:
                pipe.scard(key)
            return dict(zip(KINDS, pipe.execute(), strict=True))

    def touch(self, used: Mapping[str, float]) -> None:
        """Record when each stream was last used (unix times; a later time never goes back) and keep
        the records for KEPT_S more."""
        with self.client.pipeline(transaction=False) as pipe:
            if used:
                pipe.zadd(self._touched, {sid: round(t, 3) for sid, t in used.items()}, gt=True)
            for key in (*self._sets, self._touched):
                pipe.expire(key, KEPT_S)
            pipe.execute()

    def unused_since(self, before: float, skip: Iterable[str] = ()) -> list[str]:
        """Streams holding a place that no gateway has used since unix time ``before``."""
        skip = set(skip)
        stale = self.client.zrangebyscore(self._touched, "-inf", before)
        return [s for s in (v.decode() for v in stale) if s not in skip]

    def last_used(self, sid: str) -> float | None:
        return self.client.zscore(self._touched, sid)

    def clear(self) -> None:
        """Forget every place of the pool (its encoders were stopped: nothing is open on it)."""
        self.client.delete(*self._sets, self._touched)
