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

    ChunkWriter(store, max_jobs=16, max_bytes=64 MiB)   # write-behind queue with backpressure
    encode_chunk(chunk, kv_dtype) / decode_chunk / encode_keys / decode_keys   # versioned, no pickle
    SceneTiler(TilingParams(alpha=0.5, lookahead=4, ...)) or SceneTiler(lookahead=4)
        .push(pts, signature) -> list[Scene]; .flush() -> list[Scene]
    offline_scenes(pts, signatures, ...) -> list[Scene]
    Retention(keep_s, keep_bytes, max_s, max_bytes); enforce(store, sid, policy)   # incremental walks
"""

from .codec import ChunkKeys, CorruptBlob, chunk_keys, decode_chunk, decode_keys, encode_chunk, encode_keys
from .lru import DeviceLRU
from .quant import DEFAULT_KV_DTYPE, KV_DTYPES
from .retention import Retention, RetentionReport, enforce, representative
from .rolling import Appended, RollingConfig, RollingMemory, StreamBusy
from .scenetiling import Scene, SceneTiler, TilingParams, offline_scenes
from .schema import DEFAULT_PREFIX, StreamKeys, new_sid
from .store import (
    ChunkMeta,
    ChunkNotFound,
    MemoryStore,
    SceneInfo,
    StreamExists,
    StreamInfo,
    StreamNotFound,
    chunk_id,
    redis_url_default,
)
from .writer import ChunkWriter, WriteFailed, WriterBusy

__all__ = [
    "TilingParams",
    "DEFAULT_KV_DTYPE",
    "KV_DTYPES",
    "DEFAULT_PREFIX",
    "Appended",
    "ChunkKeys",
    "ChunkMeta",
    "ChunkNotFound",
    "ChunkWriter",
    "CorruptBlob",
    "DeviceLRU",
    "MemoryStore",
    "Retention",
    "RetentionReport",
    "RollingConfig",
    "RollingMemory",
    "Scene",
    "SceneInfo",
    "SceneTiler",
    "StreamBusy",
    "StreamExists",
    "StreamInfo",
    "StreamKeys",
    "StreamNotFound",
    "WriteFailed",
    "WriterBusy",
    "chunk_id",
    "chunk_keys",
    "decode_chunk",
    "decode_keys",
    "encode_chunk",
    "encode_keys",
    "enforce",
    "new_sid",
    "offline_scenes",
    "redis_url_default",
    "representative",
]
