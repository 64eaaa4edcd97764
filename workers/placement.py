"""Which encoder serves which stream, recorded in Redis so that every caller agrees.

One hash, ``{prefix}placement`` (memory/schema.py): stream id -> encoder actor name. A file's
decoder, which has only the stream id, finds its encoder there, and so does every gateway of a
deployment (they share one pool of named encoders, workers/encoder_pool.py). Moves are
compare-and-set (one Lua step, memory/scripts.py): when several callers see the same encoder die,
the first move wins and the others adopt it, so callers do not split a stream over two encoders (a
stale one that still writes loses its lease on the next write).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import redis

from scenekv.memory.schema import placement_key
from scenekv.memory.scripts import MOVE_PLACEMENT


class Placement:
    """The stream -> encoder records; plain Redis, no Ray (the pool decides, this remembers)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.key = placement_key(prefix)
        self._move = client.register_script(MOVE_PLACEMENT)

    def encoder_of(self, sid: str) -> str | None:
        name = self.client.hget(self.key, sid)
        return name.decode() if name is not None else None

    def loads(self, names: Iterable[str]) -> dict[str, int]:
        """Streams placed on each of ``names`` (records naming other encoders are not counted)."""
        counts = Counter(v.decode() for v in self.client.hvals(self.key))
        return {name: counts.get(name, 0) for name in names}

    def move(self, sid: str, seen: str | None, to: str) -> str | None:
        """Put ``sid`` on ``to`` if its record is still ``seen`` (None: no record); returns the
        stream's encoder after the call, which is another caller's choice if that one came first."""
        out = self._move(keys=[self.key], args=[sid, seen or "", to])
        out = out.decode() if isinstance(out, bytes) else str(out or "")
        return out or None  # None: the record went meanwhile (released)

    def release(self, sid: str) -> None:
        """The stream is closed everywhere: its next open places it afresh."""
        self.client.hdel(self.key, sid)

    def forget_encoders(self, names: Iterable[str]) -> int:
        """Drop every record naming one of ``names`` (encoders being shut down); returns how many."""
        gone = set(names)
        stale = [k for k, v in self.client.hgetall(self.key).items() if v.decode() in gone]
        return int(self.client.hdel(self.key, *stale)) if stale else 0
