"""A stream's chunks: KV blobs and retrieval keys, their index, and loads through a device LRU.

A chunk's blob, keys, index entries and scene-list entry are written and dropped by one Lua step
each (scripts.py), so retention and retries never leave a blob without its index. Loads are one
round trip (MGET; pipelined GETs on a cluster). The only part of the store that needs torch.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable

import torch

from scenekv.vlm import KVChunk

from .codec import ChunkKeys, chunk_header, decode_chunk, decode_keys, encode_chunk, encode_keys
from .lru import DeviceLRU
from .records import ChunkMeta, ChunkNotFound, field_args, text
from .redis_conn import StoreBase


class ChunkStore(StoreBase):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._generations: dict[str, bytes] = {}  # sid -> created_at last seen (DeviceLRU keys)

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
                    *field_args({"updated_at": time.time(), **(state or {})}),
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
        return [text(c) for c in self.client.zrangebyscore(self.keys(sid).chunks, lo, hi)]

    def chunk_index(self, sid: str) -> list[ChunkMeta]:
        """Metadata of every stored chunk (one round trip), oldest first: for time-anchored selection."""
        raw = self.client.hgetall(self.keys(sid).chunkmeta)
        metas = [_meta(text(c), v) for c, v in raw.items()]
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
        return [text(c) for c in ids], int(count), generation

    def oldest_chunks(self, sid: str, n: int) -> list[ChunkMeta]:
        """Metadata of the ``n`` oldest stored chunks, oldest first (two round trips, O(n))."""
        cids = [text(c) for c in self.client.zrange(self.keys(sid).chunks, 0, n - 1)]
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
            out = [c if _on_device(c.keys, target) else _moved(c, target) for c in out]
        return out

    def load_keys(self, sid: str, cids: Iterable[str] | None = None) -> dict[str, ChunkKeys]:
        """Retrieval keys of ``cids`` (default: every stored chunk) without touching any KV."""
        k = self.keys(sid)
        cids = self.chunk_ids(sid) if cids is None else [str(c) for c in cids]
        if not cids:
            return {}
        blobs = self.client.mget([k.chunk_key(c) for c in cids])
        return {c: decode_keys(b) for c, b in zip(cids, blobs, strict=True) if b is not None}

    def stored_bytes(self, sid: str) -> int:
        """Bytes actually held by the stream's chunk and key blobs, summed from Redis (STRLEN)."""
        k = self.keys(sid)
        cids = self.chunk_ids(sid)
        pipe = self.client.pipeline(transaction=False)
        for c in cids:
            pipe.strlen(k.chunk(c)).strlen(k.chunk_key(c))
        return int(sum(pipe.execute()))


def _on_device(t: torch.Tensor, device: torch.device) -> bool:
    """Whether ``t`` already sits on ``device`` (an index-less device matches any of its type)."""
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
