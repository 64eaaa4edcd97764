"""MemoryStore: every Redis read and write of SceneKV's stream memory (key names in schema.py).

Writes are single Lua steps (scripts.py): atomic and safe to repeat, which is what lets the
write-behind ChunkWriter retry blindly after a connection error. Reads that QA does per question
(a set of chunks, all retrieval keys) are one round trip each (MGET / HGETALL).

Expiry: with ``ttl_s`` set, every key a write touches gets a TTL of 1.25 x ttl_s, and
:meth:`touch` (called by RollingMemory at least every ttl_s / 4 of activity) refreshes all keys of
the stream, so an idle stream disappears between ttl_s and 1.25 x ttl_s after its last activity and
an active one never loses a key. ``ttl_s=None`` keeps streams until deleted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import redis
import torch

from scenekv.errors import UserError
from scenekv.vlm import KVChunk

from . import scripts
from .codec import ChunkKeys, chunk_header, decode_chunk, decode_keys, encode_chunk, encode_keys
from .lru import DeviceLRU
from .schema import DEFAULT_PREFIX, StreamKeys, _escape_glob, check_sid, keys_for, new_sid

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_TTL_S = 7 * 24 * 3600.0
EVENTS_MAXLEN = 10_000
TTL_GRACE = 1.25


CLUSTER_SCHEME = "redis+cluster://"


def redis_url_default() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def connect(url: str, socket_timeout: float = 10.0) -> redis.Redis | redis.RedisCluster:
    """A client for ``url``: redis-py's RedisCluster for ``redis+cluster://`` and for a plain
    ``redis://`` URL that turns out to be a cluster node (``INFO cluster``), else a plain client."""
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": min(5.0, socket_timeout)}
    if url.startswith(CLUSTER_SCHEME):
        return redis.RedisCluster.from_url("redis://" + url[len(CLUSTER_SCHEME) :], **timeouts)
    client = redis.Redis.from_url(url, **timeouts)
    try:
        clustered = bool(client.info("cluster").get("cluster_enabled"))
    except redis.RedisError:  # not up yet, or INFO refused: a plain client, errors come as before
        return client
    if not clustered:
        return client
    client.close()
    return redis.RedisCluster.from_url(url, **timeouts)


class StreamNotFound(UserError):
    code = "stream_not_found"


class StreamExists(UserError):
    code = "stream_exists"


class StreamBusy(UserError):
    """Another process holds (or took over) the stream's writer lease."""

    code = "stream_busy"


class ChunkNotFound(UserError):
    code = "chunk_not_found"


@dataclass
class StreamInfo:
    """What a stream costs and where it stands: for the CLI, /metrics and attach."""

    sid: str
    source: str
    model: str
    carriers: str
    fps: float
    status: str
    created_at: float
    last_pts: float | None
    next_pos: int
    next_index: int
    bytes: int  # chunk blobs + retrieval keys
    chunks: int
    scenes: int
    events: int
    oldest_pts: float | None  # first pts of the oldest chunk still stored
    ttl_s: float | None  # seconds until the stream hash expires (None: never)
    extra: dict = field(default_factory=dict)
    # newest frame the live writer had appended at its last write (>= last_pts, which is the newest
    # frame stored in Redis and where a restarted stream resumes); None when never written
    newest_pts: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChunkMeta:
    cid: str
    first_pts: float
    last_pts: float
    position: int
    span: int  # RoPE positions covered: position .. position + span
    tokens: int
    first_frame: int
    last_frame: int
    frames: int
    scene: int | None
    bytes: int
    codec: str = "float"  # how its KV is stored (memory/quant.py); chunks written before codecs: float


@dataclass
class SceneInfo:
    index: int
    start: float
    end: float | None
    closed: bool
    caption: str
    chunks: list[str]
    frames: int
    compacted: bool
    extra: dict = field(default_factory=dict)


def decode_event(eid, fields: dict) -> tuple[str, str, dict]:
    """One entry of a stream's event log: (id, type, data)."""
    return _s(eid), _s(fields[b"type"]), json.loads(fields[b"data"])


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _f(value) -> float | None:
    return None if value in (None, b"", "") else float(value)


def _fields(mapping: dict) -> list:
    out = []
    for k, v in mapping.items():
        if v is None:
            v = ""
        elif isinstance(v, (dict, list)):
            v = json.dumps(v, separators=(",", ":"))
        elif isinstance(v, bool):
            v = int(v)
        out += [k, v]
    return out


class MemoryStore:
    """Stream memory in one Redis, under ``prefix``; thread-safe (redis-py pools connections)."""

    def __init__(
        self,
        redis_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        *,
        ttl_s: float | None = DEFAULT_TTL_S,
        events_maxlen: int = EVENTS_MAXLEN,
        socket_timeout: float = 10.0,
        client: redis.Redis | None = None,
    ) -> None:
        self.url = redis_url or redis_url_default()
        self.prefix = keys_for(prefix, "x").prefix
        self.ttl_s = ttl_s
        self.events_maxlen = events_maxlen
        self.client = client or connect(self.url, socket_timeout)
        self.cluster = isinstance(self.client, redis.RedisCluster)
        self._scripts = {
            name: self.client.register_script(getattr(scripts, name))
            for name in (
                "WRITE_CHUNK",
                "DROP_CHUNK",
                "PUT_SCENE",
                "DROP_SCENE",
                "CREATE_STREAM",
                "DELETE_STREAM",
                "TOUCH_STREAM",
                "UPDATE_STREAM",
                "CLAIM_OWNER",
                "RELEASE_OWNER",
            )
        }
        self._generations: dict[str, bytes] = {}  # sid -> created_at last seen (DeviceLRU keys)

    # -- plumbing ---------------------------------------------------------------------------------
    def keys(self, sid: str) -> StreamKeys:
        return keys_for(self.prefix, sid)

    @property
    def _ttl_ms(self) -> int:
        return 0 if self.ttl_s is None else max(1, int(self.ttl_s * TTL_GRACE * 1000))

    def ping(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise UserError(
                f"cannot reach Redis at {self.url}: {exc} (set REDIS_URL or --redis-url)",
                code="redis_unavailable",
            ) from exc

    def close(self) -> None:
        self.client.close()

    def _run(self, name: str, keys: list[str], args: list):
        try:
            return self._scripts[name](keys=keys, args=args)
        except redis.ResponseError as exc:
            if "NOSTREAM" in str(exc):
                raise StreamNotFound(f"stream is gone (deleted or expired): {keys[0]}") from exc
            if "NOTOWNER" in str(exc):
                raise StreamBusy(
                    f"{keys[0]}: another process took over this stream (its writer lease holds another "
                    "token); this write was refused"
                ) from exc
            raise

    # -- streams ----------------------------------------------------------------------------------
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
            [sid, self._ttl_ms, data, self.events_maxlen, *_fields(base)],
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
        return {_s(k): v for k, v in raw.items()}

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
                *_fields(fields),
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
        h = {_s(a): b for a, b in raw.items()}
        known = set(StreamInfo.__dataclass_fields__) | {"last_signature", "tiler", "resume", "updated_at"}
        last_pts = _f(h.get("last_pts"))
        newest_pts = _f(h.get("newest_pts"))
        return StreamInfo(
            sid=sid,
            source=_s(h.get("source", b"")),
            model=_s(h.get("model", b"")),
            carriers=_s(h.get("carriers", b"")),
            fps=float(h.get("fps", 0) or 0),
            status=_s(h.get("status", b"")),
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
            extra={key: _s(v) for key, v in h.items() if key not in known},
            newest_pts=newest_pts if newest_pts is not None else last_pts,
        )

    def stored_pts(self, sid: str) -> float | None:
        """pts of the newest frame whose KV Redis holds (one HGET): what survives the encoder's death."""
        return _f(self.client.hget(self.keys(sid).stream, "last_pts"))

    def list_streams(self) -> list[str]:
        """Ids of the streams under this prefix (ids whose stream expired are pruned)."""
        registry = self.keys("x").registry
        sids = sorted(_s(s) for s in self.client.smembers(registry))
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

    def migrate_untagged(self) -> list[str]:
        """Move streams written before the hash-tagged layout (``stream:SID`` -> ``stream:{SID}``,
        schema.py) to it, key by key with RENAME (TTLs kept); returns the ids moved. Cheap when there
        is nothing to do: one SMEMBERS and one EXISTS per registered stream. A plain Redis only (a
        cluster never held the old layout: its multi-key steps could not run there)."""
        if self.cluster:
            return []
        moved = []
        registry = self.keys("x").registry
        for sid in sorted(_s(x) for x in self.client.smembers(registry)):
            k = self.keys(sid)
            old = k.untagged_base
            if self.client.exists(k.stream) or not self.client.exists(old):
                continue
            # the hash last: a start that dies half way finds the stream still untagged, and goes on
            names = [*self.client.scan_iter(match=f"{_escape_glob(old)}:*", count=1000), old.encode()]
            for name in names:
                rest = (name.decode() if isinstance(name, bytes) else name)[len(old) :]
                try:
                    self.client.rename(name, k.base + rest)
                except redis.ResponseError as exc:  # expired since the scan: nothing to move
                    if "no such key" not in str(exc).lower():
                        raise
            moved.append(sid)
        return moved

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

    # -- chunks -----------------------------------------------------------------------------------
    def write_chunk(
        self,
        sid: str,
        chunk: KVChunk,
        keys: ChunkKeys,
        *,
        scene: int | None = None,
        state: dict | None = None,
        blob: bytes | None = None,
        owner: str | None = None,
    ) -> int:
        """Store a chunk, its retrieval keys and index entry (and optional stream state) atomically.

        The chunk id is added to scene ``scene``'s chunk list (server-side, if the scene exists).
        Returns the bytes stored. Safe to call again with the same chunk (e.g. after a lost reply).
        With ``owner`` (the writer's lease token) the write is refused (StreamBusy) when another
        process holds the stream's lease.
        """
        k = self.keys(sid)
        cid = chunk_id(chunk)
        blob = blob if blob is not None else encode_chunk(chunk)
        key_blob = encode_keys(keys)
        meta = {
            "first_pts": chunk.first_pts,
            "last_pts": chunk.last_pts,
            "position": chunk.position,
            "span": chunk.span,
            "tokens": chunk.tokens,
            "first_frame": chunk.frames[0].index,
            "last_frame": chunk.frames[-1].index,
            "frames": len(chunk.frames),
            "scene": scene,
            "bytes": len(blob) + len(key_blob),
            "codec": chunk_header(blob).get("codec", "float"),
        }
        scene_key = k.scene(scene if scene is not None else "none")
        return int(
            self._run(
                "WRITE_CHUNK",
                [k.chunk(cid), k.chunk_key(cid), k.chunks, k.chunkmeta, k.stream, scene_key, k.owner],
                [
                    blob,
                    key_blob,
                    repr(float(chunk.first_pts)),
                    cid,
                    json.dumps(meta),
                    self._ttl_ms,
                    "1" if scene is not None else "",
                    owner or "",
                    *_fields({"updated_at": time.time(), **(state or {})}),
                ],
            )
        )

    def drop_chunk(self, sid: str, cid: str, scene: int | None = None, *, owner: str | None = None) -> int:
        """Delete one chunk, its keys, index entries and scene-list entry; returns the bytes freed."""
        k = self.keys(sid)
        scene_key = k.scene(scene if scene is not None else "none")
        return int(
            self._run(
                "DROP_CHUNK",
                [k.chunk(cid), k.chunk_key(cid), k.chunks, k.chunkmeta, k.stream, scene_key, k.owner],
                [cid, owner or ""],
            )
        )

    def chunk_ids(self, sid: str, start: float = float("-inf"), end: float = float("inf")) -> list[str]:
        """Chunk ids whose first pts is in [start, end], oldest first."""
        lo = "-inf" if start == float("-inf") else repr(float(start))
        hi = "+inf" if end == float("inf") else repr(float(end))
        return [_s(c) for c in self.client.zrangebyscore(self.keys(sid).chunks, lo, hi)]

    def chunk_index(self, sid: str) -> list[ChunkMeta]:
        """Metadata of every stored chunk (one round trip), oldest first: for time-anchored selection."""
        raw = self.client.hgetall(self.keys(sid).chunkmeta)
        metas = [_meta(_s(c), v) for c, v in raw.items()]
        return sorted(metas, key=lambda m: m.first_pts)

    def chunks_after(self, sid: str, after: float | None) -> tuple[list[str], int, bytes | None]:
        """Ids of chunks whose first pts is after ``after`` (all when None), oldest first, with the
        number of chunks stored and the stream's ``created_at``, in one round trip: the cheap part of
        a retrieval index refresh (qa/key_index.py)."""
        k = self.keys(sid)
        lo = "-inf" if after is None else f"({after!r}"
        pipe = self.client.pipeline(transaction=False)
        pipe.zrangebyscore(k.chunks, lo, "+inf").zcard(k.chunks).hget(k.stream, "created_at")
        ids, count, generation = pipe.execute()
        return [_s(c) for c in ids], int(count), generation

    def oldest_chunks(self, sid: str, n: int) -> list[ChunkMeta]:
        """Metadata of the ``n`` oldest stored chunks, oldest first (two round trips, O(n))."""
        cids = [_s(c) for c in self.client.zrange(self.keys(sid).chunks, 0, n - 1)]
        metas = self.chunk_metas(sid, cids)
        return [metas[c] for c in cids if c in metas]

    def newest_chunk_pts(self, sid: str) -> float | None:
        """First pts of the newest stored chunk (one ZRANGE)."""
        top = self.client.zrange(self.keys(sid).chunks, -1, -1, withscores=True)
        return float(top[0][1]) if top else None

    def chunk_metas(self, sid: str, cids: list[str]) -> dict[str, ChunkMeta]:
        """Metadata of ``cids`` (one HMGET); chunks gone meanwhile are left out."""
        if not cids:
            return {}
        raw = self.client.hmget(self.keys(sid).chunkmeta, cids)
        return {c: _meta(c, v) for c, v in zip(cids, raw, strict=True) if v is not None}

    def load_chunks(
        self,
        sid: str,
        cids: Iterable[str],
        *,
        lru: DeviceLRU | None = None,
        device: torch.device | str | None = None,
        strict: bool = True,
    ) -> list[KVChunk]:
        """The chunks ``cids`` in the order given, from ``lru`` where present, the rest in one MGET.

        LRU entries are keyed by the stream's generation (its ``created_at``), read in the same
        round trip as the blobs, so a stream deleted and created again under the same id never gets
        the old stream's KV. Hits are returned on ``device`` when one is given. Missing chunks
        (dropped by retention meanwhile) raise ChunkNotFound, or are skipped when ``strict`` is false.
        """
        cids = [str(c) for c in cids]
        k = self.keys(sid)
        target = torch.device(device) if device is not None else None
        found: dict[str, KVChunk] = {}
        guess = self._generations.get(sid) if lru is not None else None
        if guess is not None:
            for cid in cids:
                hit = lru.get((self.prefix, sid, guess, cid))
                if hit is not None:
                    found[cid] = hit
        missing = [c for c in cids if c not in found]
        pipe = self.client.pipeline(transaction=False)  # one round trip
        if lru is not None:
            pipe.hget(k.stream, "created_at")
        if self.cluster:  # a cluster pipeline refuses MGET (one slot or not): pipelined GETs
            for c in missing:
                pipe.get(k.chunk(c))
        elif missing:
            pipe.mget([k.chunk(c) for c in missing])
        replies = pipe.execute() if (lru is not None or missing) else []
        generation = replies.pop(0) if lru is not None else None
        blobs = replies if self.cluster else (replies[0] if missing else [])
        if lru is not None:
            if generation != guess and found:  # the stream was recreated: the hits are another's KV
                found.clear()
                lru.discard(lambda key: key[:2] == (self.prefix, sid) and key[2] != generation)
                missing = cids
                blobs = self.client.mget([k.chunk(c) for c in missing])
            if generation is None:
                self._generations.pop(sid, None)
            else:
                self._generations[sid] = generation
        for cid, blob in zip(missing, blobs, strict=True):
            if blob is None:
                if strict:
                    raise ChunkNotFound(f"chunk {cid} of stream {sid!r} is gone (dropped or expired)")
                continue
            chunk = decode_chunk(blob)
            if target is not None:
                chunk.keys, chunk.values = chunk.keys.to(target), chunk.values.to(target)
            found[cid] = chunk
            if lru is not None and generation is not None:
                lru.put((self.prefix, sid, generation, cid), chunk, chunk.nbytes)
        out = [found[c] for c in cids if c in found]
        if target is not None:
            out = [c if _on(c.keys, target) else _moved(c, target) for c in out]
        return out

    def load_keys(self, sid: str, cids: Iterable[str] | None = None) -> dict[str, ChunkKeys]:
        """Retrieval keys of ``cids`` (default: every stored chunk) without touching any KV."""
        k = self.keys(sid)
        cids = self.chunk_ids(sid) if cids is None else [str(c) for c in cids]
        if not cids:
            return {}
        blobs = self.client.mget([k.chunk_key(c) for c in cids])
        return {c: decode_keys(b) for c, b in zip(cids, blobs, strict=True) if b is not None}

    # -- scenes -----------------------------------------------------------------------------------
    def put_scene(
        self,
        sid: str,
        index: int,
        start: float,
        fields: dict,
        *,
        event: str = "",
        data: dict | None = None,
        owner: str | None = None,
        only_new: bool = False,
    ) -> str | None:
        """Create or update scene ``index``; ``event`` is appended at most once per scene and type.

        ``only_new``: set the fields only if the scene has no record yet. ``owner``: the writer's
        lease token (refused with StreamBusy when another process holds the lease).
        """
        k = self.keys(sid)
        event_id = self._run(
            "PUT_SCENE",
            [k.scene(index), k.scenes, k.events, k.stream, k.owner],
            [
                index,
                repr(float(start)),
                self._ttl_ms,
                event,
                json.dumps({"scene": index, **(data or {})}),
                self.events_maxlen,
                owner or "",
                "1" if only_new else "",
                *_fields({"index": index, "start": start, **fields}),
            ],
        )
        return _s(event_id) if event_id else None

    def drop_scene(
        self,
        sid: str,
        index: int,
        *,
        event: str = "",
        data: dict | None = None,
        owner: str | None = None,
    ) -> bool:
        """Remove scene ``index``'s record; ``event`` is added by the same step, only if it was there.

        Returns whether a record was removed (False on a repeat: no second event).
        """
        k = self.keys(sid)
        return bool(
            self._run(
                "DROP_SCENE",
                [k.scene(index), k.scenes, k.stream, k.events, k.owner],
                [index, owner or "", event, json.dumps(data or {}), self.events_maxlen],
            )
        )

    def set_caption(self, sid: str, index: int, caption: str) -> None:
        """Write a scene's caption (qa/) and announce it with a ``scene.captioned`` event."""
        scene = self.scene(sid, index)
        self.put_scene(
            sid, index, scene.start, {"caption": caption}, event="scene.captioned", data={"caption": caption}
        )

    def scene_or_none(self, sid: str, index: int) -> SceneInfo | None:
        raw = self.client.hgetall(self.keys(sid).scene(index))
        return _scene_info(raw) if raw else None

    def scene(self, sid: str, index: int) -> SceneInfo:
        raw = self.client.hgetall(self.keys(sid).scene(index))
        if not raw:
            raise UserError(f"stream {sid!r} has no scene {index}", code="scene_not_found")
        return _scene_info(raw)

    def scenes(self, sid: str, start: float | None = None, limit: int | None = None) -> list[SceneInfo]:
        """Scenes in time order; with ``start``, only those starting at or after it; at most ``limit``."""
        k = self.keys(sid)
        lo = "-inf" if start is None else repr(float(start))
        if limit is None:
            ids = self.client.zrangebyscore(k.scenes, lo, "+inf")
        else:
            ids = self.client.zrangebyscore(k.scenes, lo, "+inf", start=0, num=limit)
        pipe = self.client.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(k.scene(_s(i)))
        return [_scene_info(raw) for raw in pipe.execute() if raw]

    # -- events -----------------------------------------------------------------------------------
    def add_event(self, sid: str, type: str, data: dict | None = None) -> str:
        k = self.keys(sid)
        payload = {"type": type, "data": json.dumps(data or {})}
        return _s(self.client.xadd(k.events, payload, maxlen=self.events_maxlen, approximate=True))

    def events(
        self, sid: str, after: str | None = None, count: int | None = None
    ) -> list[tuple[str, str, dict]]:
        """(id, type, data) of the stream's events after id ``after`` (default: from the start)."""
        start = "-" if after is None else f"({after}"
        raw = self.client.xrange(self.keys(sid).events, min=start, count=count)
        return [(_s(i), _s(f[b"type"]), json.loads(f[b"data"])) for i, f in raw]

    def wait_events(self, sid: str, after: str = "$", block_ms: int = 1000) -> list[tuple[str, str, dict]]:
        """Block up to ``block_ms`` for events after ``after`` ("$": only new ones); for gateways."""
        raw = self.client.xread({self.keys(sid).events: after}, block=block_ms)
        return [decode_event(i, f) for _, entries in raw or [] for i, f in entries]

    # -- accounting -------------------------------------------------------------------------------
    def stored_bytes(self, sid: str) -> int:
        """Bytes actually held by the stream's chunk and key blobs, summed from Redis (STRLEN)."""
        k = self.keys(sid)
        cids = self.chunk_ids(sid)
        pipe = self.client.pipeline(transaction=False)
        for c in cids:
            pipe.strlen(k.chunk(c)).strlen(k.chunk_key(c))
        return int(sum(pipe.execute()))


def _on(t: torch.Tensor, device: torch.device) -> bool:
    return t.device.type == device.type and (device.index is None or t.device.index == device.index)


def _moved(chunk: KVChunk, device: torch.device) -> KVChunk:
    """A copy of ``chunk`` on ``device`` (the cached original stays where it is)."""
    return dataclasses.replace(chunk, keys=chunk.keys.to(device), values=chunk.values.to(device))


def chunk_id(chunk: KVChunk) -> str:
    """A chunk is named by its first frame's index: unique in a stream, stable across retries."""
    return str(chunk.frames[0].index)


def _meta(cid: str, raw: bytes) -> ChunkMeta:
    """A chunkmeta entry; fields a newer version added are ignored, ones it lacks take defaults."""
    fields = json.loads(raw)
    return ChunkMeta(cid=cid, **{k: v for k, v in fields.items() if k in ChunkMeta.__dataclass_fields__})


def _scene_info(raw: dict) -> SceneInfo:
    h = {_s(a): _s(b) for a, b in raw.items()}
    known = {"index", "start", "end", "closed", "caption", "chunks", "frames", "compacted"}
    return SceneInfo(
        index=int(h["index"]),
        start=float(h["start"]),
        end=_f(h.get("end")),
        closed=h.get("closed") == "1",
        caption=h.get("caption", ""),
        chunks=_chunk_list(h.get("chunks")),
        frames=int(h.get("frames") or 0),
        compacted=h.get("compacted") == "1",
        extra={a: b for a, b in h.items() if a not in known and not a.startswith("event:")},
    )


def _chunk_list(text: str | None) -> list[str]:
    if text in (None, "", "{}"):  # Lua's cjson writes an empty table as {}
        return []
    return [str(c) for c in json.loads(text)]
