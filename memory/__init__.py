"""Redis-backed rolling KV memory and SceneTiling for SceneKV streams.

Public API (qa/ and workers/ build on exactly these)::

    store = MemoryStore(redis_url=None, prefix="skv:", ttl_s=7 * 86400)   # REDIS_URL or 127.0.0.1:6379
                                            # (redis+cluster://, or a cluster node: RedisCluster)
    mem = RollingMemory.create(store, backend, carriers="pool:16", sid=None, source="", fps=1.0,
                               config=RollingConfig(window=32, chunk_frames=8, kv_dtype="int8",
                                                    retention=Retention.tiers(3600, 86400, None),
                                                    tiler=TilingParams(lookahead=4)))
    mem = RollingMemory.attach(store, backend, sid)          # after a restart: everything continues
    mem.append([(pts, rgb), ...]) -> Appended(records, closed)   # closed: list[Scene]
    mem.flush(); mem.detach(); mem.end(); mem.abandon(); mem.info() -> StreamInfo

    store.info(sid) -> StreamInfo     # bytes, chunks, scenes, events, last_pts (stored), newest_pts, ttl
    store.chunk_index(sid) -> list[ChunkMeta]     # pts/position ranges, scene, bytes (one HGETALL)
    store.load_keys(sid, cids=None) -> {cid: ChunkKeys(mean_keys, feature)}   # no KV moved
    store.load_chunks(sid, cids, lru=DeviceLRU(max_bytes), device=...) -> list[KVChunk]  # one MGET
    store.scenes(sid) -> list[SceneInfo]; store.set_caption(sid, scene, text)
    store.events(sid, after=None) / store.wait_events(sid, after="$", block_ms=1000)
    store.list_streams(); store.delete_stream(sid)   # every key of the stream, one call
    store.put_reading(sid, Reading(pts, object, background)); store.read_through(sid)  # content index
    store.index_labels(sid); store.index_times(sid, label, start, end); store.label_hits(...)
    store.add_watch(sid, Watch(...)); store.remove_watch(sid, id); store.watches(sid)   # watches.py
    store.put_watch_hit(sid, watch, WatchHit(...)); store.watch_hits(sid)

    ChunkWriter(store, max_jobs=16, max_bytes=64 MiB)   # write-behind queue with backpressure
    encode_chunk(chunk, kv_dtype) / decode_chunk / encode_keys / decode_keys   # versioned, no pickle
    SceneTiler(TilingParams(alpha=0.5, lookahead=4, ...)) or SceneTiler(lookahead=4)
        .push(pts, signature, image=rgb) -> list[Scene]; .flush() -> list[Scene]   # image: colour signal
    offline_scenes(pts, signatures, images=rgbs_or_histograms, ...) -> list[Scene]
    Retention(keep_s, keep_bytes, max_s, max_bytes); enforce(store, sid, policy)   # incremental walks

The names are imported on first use, so ``scenekv.memory.<module>`` of a torch-free part (schema,
scripts, redis_conn, records, streams, scenes, events, event_feed, content_index, watches) loads without
torch: the gateway reads events that way.
"""

from __future__ import annotations

import importlib

# name -> the module that defines it
_EXPORTS = {
    "Appended": "rolling",
    "ChunkKeys": "codec",
    "ChunkMeta": "records",
    "ChunkNotFound": "records",
    "ChunkWriter": "writer",
    "ContentIndex": "content_index",
    "CorruptBlob": "codec",
    "DEFAULT_KV_DTYPE": "quant",
    "DEFAULT_PREFIX": "schema",
    "DeviceLRU": "lru",
    "KV_DTYPES": "quant",
    "MemoryStore": "store",
    "Retention": "retention",
    "Reading": "content_index",
    "Watch": "watches",
    "WatchHit": "watches",
    "RetentionReport": "retention",
    "RollingConfig": "rolling",
    "RollingMemory": "rolling",
    "Scene": "scenetiling",
    "SceneInfo": "records",
    "SceneTiler": "scenetiling",
    "StreamBusy": "records",
    "StreamExists": "records",
    "StreamInfo": "records",
    "StreamKeys": "schema",
    "StreamNotFound": "records",
    "TilingParams": "scenetiling",
    "WriteFailed": "writer",
    "WriterBusy": "writer",
    "chunk_id": "chunks",
    "chunk_keys": "codec",
    "decode_chunk": "codec",
    "decode_keys": "codec",
    "encode_chunk": "codec",
    "encode_keys": "codec",
    "enforce": "retention",
    "new_sid": "schema",
    "offline_scenes": "scenetiling",
    "redis_url_default": "redis_conn",
    "representative": "retention",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
