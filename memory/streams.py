"""A stream's own record: create, update, describe, list, delete, keep alive, and its writer lease.

Every write is one Lua step (scripts.py): atomic and safe to repeat, which is what lets the
write-behind ChunkWriter retry blindly after a connection error. Torch-free.
"""

from __future__ import annotations

import json
import secrets
import time

from .owner_keys import new_key
from .records import StreamExists, StreamInfo, StreamNotFound, field_args, float_or_none, text
from .redis_conn import StoreBase
from .schema import check_sid, new_sid

KEY_FIELD = "key_sha256"  # the stream hash's field holding the hash of its owner key


class StreamRecords(StoreBase):
    def create_stream(
        self,
        sid: str | None = None,
        *,
        source: str = "",
        model: str = "",
        fps: float = 1.0,
        carriers: str = "",
        fields: dict | None = None,
    ) -> str:
        """Register a new stream; raises StreamExists if ``sid`` is taken."""
        sid = check_sid(sid) if sid is not None else new_sid()
        k = self.keys(sid)
        now = time.time()
        base = {
            "sid": sid,
            "source": source,
            "model": model,
            "fps": fps,
            "carriers": carriers,
            "status": "live",
            "created_at": now,
            "updated_at": now,
            "last_pts": "",
            "next_pos": 0,
            "next_index": 0,
            "bytes": 0,
            "chunks": 0,
            "scenes": 0,
            **(fields or {}),
        }
        data = json.dumps({"sid": sid, "source": source, "model": model, "carriers": carriers})
        # Registered first, in its own slot: an id whose stream was never made is pruned by listing.
        self.client.sadd(k.registry, sid)
        created = self._run(
            "CREATE_STREAM",
            [k.stream, k.events],
            [sid, self._ttl_ms, data, self.events_maxlen, *field_args(base)],
        )
        if not created:
            raise StreamExists(f"stream {sid!r} already exists (attach to it, or delete it first)")
        return sid

    def exists(self, sid: str) -> bool:
        return bool(self.client.exists(self.keys(sid).stream))

    def stream_fields(self, sid: str) -> dict[str, bytes]:
        raw = self.client.hgetall(self.keys(sid).stream)
        if not raw:
            raise StreamNotFound(f"no stream {sid!r} under prefix {self.prefix!r}")
        return {text(k): v for k, v in raw.items()}

    def update_stream(
        self,
        sid: str,
        fields: dict,
        *,
        event: str = "",
        data: dict | None = None,
        owner: str | None = None,
        event_key: str | None = None,
    ) -> None:
        """Set stream fields and optionally add a stream-level event, in one atomic step.

        ``owner``: the writer's lease token; the step is refused (StreamBusy) if another holds the
        lease. ``event_key``: names this event so that repeating the call (a retry after a lost
        reply) adds it once; without one a key is made per call (redis-py's own retries repeat it).
        """
        k = self.keys(sid)
        if event and not event_key:
            event_key = f"{event}:{secrets.token_hex(8)}"
        self._run(
            "UPDATE_STREAM",
            [k.stream, k.events, k.eventmarks, k.owner],
            [
                self._ttl_ms,
                event,
                json.dumps(data or {}),
                self.events_maxlen,
                owner or "",
                event_key or "",
                *field_args(fields),
            ],
        )

    def info(self, sid: str) -> StreamInfo:
        k = self.keys(sid)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(k.stream).zcard(k.chunks).zcard(k.scenes).xlen(k.events)
        pipe.zrange(k.chunks, 0, 0, withscores=True).pttl(k.stream)
        raw, chunks, scenes, events, oldest, pttl = pipe.execute()
        if not raw:
            raise StreamNotFound(f"no stream {sid!r} under prefix {self.prefix!r}")
        h = {text(a): b for a, b in raw.items()}
        known = set(StreamInfo.__dataclass_fields__) | {
            "last_signature",
            "tiler",
            "resume",
            "updated_at",
            KEY_FIELD,
        }
        last_pts = float_or_none(h.get("last_pts"))
        newest_pts = float_or_none(h.get("newest_pts"))
        return StreamInfo(
            sid=sid,
            source=text(h.get("source", b"")),
            model=text(h.get("model", b"")),
            carriers=text(h.get("carriers", b"")),
            fps=float(h.get("fps", 0) or 0),
            status=text(h.get("status", b"")),
            created_at=float(h.get("created_at", 0) or 0),
            last_pts=last_pts,
            next_pos=int(h.get("next_pos", 0) or 0),
            next_index=int(h.get("next_index", 0) or 0),
            bytes=int(h.get("bytes", 0) or 0),
            chunks=chunks,
            scenes=scenes,
            events=events,
            oldest_pts=oldest[0][1] if oldest else None,
            ttl_s=pttl / 1000 if pttl and pttl > 0 else None,
            extra={key: text(v) for key, v in h.items() if key not in known},
            newest_pts=newest_pts if newest_pts is not None else last_pts,
        )

    def set_key_hash(self, sid: str, key_hash: str) -> bool:
        """Give the stream its owner's key (as a hash; the key itself is never stored). Only once:
        False when it already has one, so nobody can take a stream over by setting another."""
        return bool(self.client.hsetnx(self.keys(sid).stream, KEY_FIELD, key_hash))

    def replace_key(self, sid: str) -> str:
        """A new owner key for ``sid`` (the operator's `scenekv memory key`): the old one, or none,
        stops counting; the new key is returned, only its hash stored."""
        key, digest = new_key()
        self.client.hset(self.keys(sid).stream, KEY_FIELD, digest)
        return key

    def key_hash(self, sid: str) -> str | None:
        """The hash of the stream's owner key; None for a stream made before streams had owners."""
        value = self.client.hget(self.keys(sid).stream, KEY_FIELD)
        return text(value) if value else None

    def stored_pts(self, sid: str) -> float | None:
        """pts of the newest frame whose KV Redis holds (one HGET): what survives the encoder's death."""
        return float_or_none(self.client.hget(self.keys(sid).stream, "last_pts"))

    def list_streams(self) -> list[str]:
        """Ids of the streams under this prefix (ids whose stream expired are pruned)."""
        registry = self.keys("x").registry
        sids = sorted(text(s) for s in self.client.smembers(registry))
        if not sids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for sid in sids:
            pipe.exists(self.keys(sid).stream)
        alive = pipe.execute()
        gone = [sid for sid, ok in zip(sids, alive, strict=True) if not ok]
        if gone:
            self.client.srem(registry, *gone)
        return [sid for sid, ok in zip(sids, alive, strict=True) if ok]

    def delete_stream(self, sid: str) -> int:
        """Remove every key of the stream; returns how many keys were deleted (0: there was none)."""
        k = self.keys(sid)
        n = self._run("DELETE_STREAM", [k.stream, k.chunks, k.chunkmeta, k.scenes, k.events], [k.base, sid])
        self.client.srem(k.registry, sid)
        # belt and braces: anything under the stream's prefix that no index references
        stray = list(self.client.scan_iter(match=k.glob, count=1000))
        if stray:
            n += self.client.delete(*stray)
        return int(n)

    def touch(self, sid: str) -> bool:
        """Refresh the TTL of every key of the stream (no-op without a TTL policy)."""
        k = self.keys(sid)
        return bool(
            self._run(
                "TOUCH_STREAM",
                [k.stream, k.chunks, k.chunkmeta, k.scenes, k.events, k.eventmarks],
                [k.base, self._ttl_ms],
            )
        )

    def claim(self, sid: str, token: str, lease_s: float, *, takeover: bool = False) -> bool:
        """Take or renew the stream's writer lease: only one process appends to a stream at a time."""
        k = self.keys(sid)
        lease_ms = max(1, int(lease_s * 1000))
        return bool(self._run("CLAIM_OWNER", [k.owner], [token, lease_ms, "1" if takeover else ""]))

    def release(self, sid: str, token: str) -> None:
        self._run("RELEASE_OWNER", [self.keys(sid).owner], [token])
