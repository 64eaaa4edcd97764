"""How many streams of each kind a deployment keeps open at once, who holds each, and its last use.

Each open stream holds something scarce: a push stream a device KV window, a lease and up to
64 MiB of unsaved frames; a file or URL stream a decoder process as well, and a live URL decodes
until it is released. So ``start_stream`` reserves a place of its kind first (refused with
``too_many_streams`` when full) and gives it back when the stream ends, is released idle, or its
file has been read to the end (its decoder is reclaimed then).

The places are kept in Redis per encoder pool (memory/schema.py ``open_stream_keys``), so a cap
holds across every gateway of a deployment. Each place records its holder, the service (gateway,
CLI command) that opened the stream, or attached it after its holder died, which releases it when
idle; a holder keeps a liveness key alive from a thread of its own while it runs. A place whose
holder's key expired (it died, or stopped) and that nobody used for ``idle_s`` is released by any
other service's sweep (``adopt``), so a dead gateway's streams do not hold their places and windows
for ever. Last use is compared across machines' clocks (kept in sync by NTP). A private pool (one
process's own encoders) has keys of its own, expiring a day after their last use.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scenekv.errors import UserError

if TYPE_CHECKING:
    import redis

KINDS = ("push", "file", "live")
KEPT_S = 86400  # how long the records outlive their last use
ALIVE_S = 30.0  # a holder's liveness key lasts this long; renewed every ALIVE_S / 3


class TooManyStreams(UserError):
    code = "too_many_streams"


@dataclass(frozen=True)
class StreamCaps:
    push: int = 64  # push streams open
    file: int = 8  # files being decoded
    live: int = 8  # live URLs (cameras, HLS, RTMP) being decoded


class StreamSlots:
    """The places taken on one pool, by kind, their holders and last use (plain Redis, blocking:
    the service calls it from a thread). ``close()`` ends this holder's liveness."""

    def __init__(
        self, client: redis.Redis, prefix: str, pool_id: str, caps: StreamCaps | None = None
    ) -> None:
        from scenekv.memory import scripts  # here: `scenekv serve --help` stays light
        from scenekv.memory.schema import open_stream_keys

        self.client = client
        self.caps = caps  # None: no caps (a library user or a benchmark; `scenekv serve` sets them)
        self.keys = open_stream_keys(prefix, pool_id)  # push, file, live, touched, holders
        *self._sets, self._touched, self._holders = self.keys
        self.holder = uuid.uuid4().hex[:12]
        self._alive = self.alive_key(self.holder)
        self._take = client.register_script(scripts.TAKE_STREAM_PLACE)
        self._touch = client.register_script(scripts.TOUCH_STREAM_PLACES)
        self._adopt = client.register_script(scripts.ADOPT_STREAM_PLACE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None  # started by the first place taken
        self._thread_lock = threading.Lock()

    def alive_key(self, holder: str) -> str:
        return f"{self._holders}:{holder}"

    def _beat(self) -> None:
        self.client.set(self._alive, "1", px=int(ALIVE_S * 1000))

    def _beating(self) -> None:
        while not self._stop.wait(ALIVE_S / 3):
            with contextlib.suppress(Exception):  # Redis away: tried again (places outlive ALIVE_S)
                self._beat()

    def _hold(self) -> None:
        """Keep this holder alive from now on (a thread renews its key every ALIVE_S / 3)."""
        with self._thread_lock:
            if self._thread is None and not self._stop.is_set():
                self._beat()
                self._thread = threading.Thread(
                    target=self._beating, name="scenekv-place-holder", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """This holder stops: its places become other services' to release (after ``idle_s``)."""
        with self._thread_lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=2.0)  # a beat in flight must not write the key back after the delete
        with contextlib.suppress(Exception):
            self.client.delete(self._alive)

    def take(self, sid: str, kind: str) -> bool:
        """Hold a place of ``kind`` for ``sid``: True if taken now, False if ``sid`` holds one
        already (this service holds it from now on if its holder is gone). TooManyStreams when they
        are all taken."""
        cap = getattr(self.caps, kind) if self.caps is not None else 0
        self._hold()
        got = self._take(
            keys=list(self.keys),
            args=[sid, KINDS.index(kind) + 1, cap, f"{time.time():.3f}", self.holder, KEPT_S],
        )
        if got == -1:
            raise TooManyStreams(
                f"this deployment already has {cap} {kind} streams open; end one or try later"
            )
        return got == 1

    def kind(self, sid: str) -> str | None:
        with self.client.pipeline(transaction=False) as pipe:
            for key in self._sets:
                pipe.sismember(key, sid)
            held = pipe.execute()
        return next((k for k, h in zip(KINDS, held, strict=True) if h), None)

    def holder_of(self, sid: str) -> tuple[str | None, bool]:
        """``sid``'s holder (None: no place, or one without a holder) and whether it is alive."""
        held = self.client.hget(self._holders, sid)
        if held is None:
            return None, False
        return held.decode(), bool(self.client.exists(self.alive_key(held.decode())))

    def holds(self, sid: str) -> bool:
        """Whether this service holds ``sid``'s place."""
        return self.holder_of(sid)[0] == self.holder

    def give_back(self, sid: str) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for key in self._sets:
                pipe.srem(key, sid)
            pipe.zrem(self._touched, sid)
            pipe.hdel(self._holders, sid)
            pipe.execute()

    def counts(self) -> dict[str, int]:
        with self.client.pipeline(transaction=False) as pipe:
            for key in self._sets:
                pipe.scard(key)
            return dict(zip(KINDS, pipe.execute(), strict=True))

    def touch(self, used: Mapping[str, float]) -> None:
        """Record when each stream was last used (unix times; only streams holding a place, and a
        later time never goes back)."""
        if used:
            args = [KEPT_S, *(x for sid, t in used.items() for x in (sid, f"{t:.3f}"))]
            self._touch(keys=list(self.keys), args=args)

    def last_used(self, sid: str) -> float | None:
        return self.client.zscore(self._touched, sid)

    def orphans(self, before: float, skip: Iterable[str] = ()) -> list[str]:
        """Streams whose holder is gone (its liveness key expired) and nobody used since unix time
        ``before``: other services' to release."""
        skip = set(skip)
        stale = {v.decode() for v in self.client.zrangebyscore(self._touched, "-inf", before)} - skip
        if not stale:
            return []
        sids = sorted(stale)
        holders = [h.decode() if h is not None else "" for h in self.client.hmget(self._holders, sids)]
        with self.client.pipeline(transaction=False) as pipe:
            for h in holders:
                pipe.exists(self.alive_key(h))
            alive = pipe.execute()
        return [sid for sid, up in zip(sids, alive, strict=True) if not up]

    def adopt(self, sid: str, before: float) -> bool:
        """Become the holder of ``sid`` if its holder is gone and nobody used it since ``before``
        (one step: of several services sweeping at once, one adopts it)."""
        return bool(self._adopt(keys=list(self.keys), args=[sid, self.holder, f"{before:.3f}"]))

    def clear(self) -> None:
        """Forget every place of the pool (its encoders were stopped: nothing is open on it)."""
        self.client.delete(*self.keys)
