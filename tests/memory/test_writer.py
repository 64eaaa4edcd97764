"""The write-behind queue: backpressure instead of unbounded RAM, no acknowledged chunk ever lost."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from scenekv.memory import ChunkWriter, MemoryStore, WriteFailed, WriterBusy, chunk_keys
from scenekv.vlm import FrameSpan, KVChunk


def make_chunk(i: int, tokens: int = 24) -> KVChunk:
    """A chunk shaped like the tiny model's (2 layers, 2 kv heads, head_dim 16), content from i."""
    g = torch.Generator().manual_seed(i)
    keys = torch.randn(2, 2, tokens, 16, generator=g)
    return KVChunk(
        keys,
        torch.randn(2, 2, tokens, 16, generator=g),
        position=100 + i * tokens,
        frames=[FrameSpan(i * 2, float(i * 2), 0, tokens // 2), FrameSpan(i * 2 + 1, i * 2 + 1.0, 12, 12)],
        model_id="tiny-random-llava-onevision",
        carriers="pool:4",
    )


def write_job(sid: str, chunk: KVChunk):
    keys = chunk_keys(chunk, torch.ones(1, 8))
    return lambda st: st.write_chunk(sid, chunk, keys)


def test_slow_redis_blocks_the_producer_instead_of_growing_the_queue(own_redis):
    store = MemoryStore(own_redis.url)
    sid = store.create_stream()
    chunk_bytes = make_chunk(0).nbytes
    writer = ChunkWriter(store, max_jobs=2, max_bytes=10 * chunk_bytes)
    admin = MemoryStore(own_redis.url).client
    admin.execute_command("CLIENT", "PAUSE", "1200", "WRITE")  # Redis stops executing writes for 1.2 s
    start = time.monotonic()
    waits, depth = [], []
    for i in range(6):
        t = time.monotonic()
        writer.submit(write_job(sid, make_chunk(i)), nbytes=chunk_bytes, timeout=10)
        waits.append(time.monotonic() - t)
        depth.append(writer.pending_jobs)
    assert max(depth) <= 2 and writer.stats["max_pending_jobs"] <= 2
    assert writer.stats["max_pending_bytes"] <= 2 * chunk_bytes
    assert sum(waits) >= 0.8  # the producer felt the stall ...
    assert time.monotonic() - start < 5
    with pytest.raises(WriterBusy, match="too slow or unreachable"):  # ... and gives up when told to
        admin.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
        writer.submit(write_job(sid, make_chunk(9)), nbytes=chunk_bytes, timeout=0.05)
        writer.submit(write_job(sid, make_chunk(10)), nbytes=chunk_bytes, timeout=0.05)
        writer.submit(write_job(sid, make_chunk(11)), nbytes=chunk_bytes, timeout=0.05)
    writer.close()
    assert writer.stats["failed"] == 0
    assert store.info(sid).chunks == writer.stats["acknowledged"]


def test_a_redis_crash_during_writes_loses_no_acknowledged_chunk(own_redis):
    store = MemoryStore(own_redis.url, socket_timeout=2)
    sid = store.create_stream()
    writer = ChunkWriter(store, max_jobs=4, retry_for=30)
    chunks = [make_chunk(i, tokens=48) for i in range(60)]
    futures = []

    def produce():
        for c in chunks:
            futures.append(writer.submit(write_job(sid, c), nbytes=c.nbytes))
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    while writer.stats["acknowledged"] < 10:
        time.sleep(0.002)
    own_redis.kill()  # SIGKILL mid-stream
    time.sleep(0.5)
    own_redis.start()  # reloads its AOF; the writer reconnects and retries
    producer.join()
    writer.flush(timeout=30)
    assert writer.stats["retries"] > 0  # it really hit the outage
    acked = [f.result() for f in futures]
    assert len(acked) == 60 and writer.stats["failed"] == 0
    own_redis.kill()  # crash again right after the last acknowledgement ...
    own_redis.start()
    fresh = MemoryStore(own_redis.url)  # ... and read back with a new client
    assert fresh.chunk_ids(sid) == sorted((str(c.frames[0].index) for c in chunks), key=int)
    back = fresh.load_chunks(sid, [str(c.frames[0].index) for c in chunks])
    assert all(
        torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
        for a, b in zip(back, chunks, strict=True)
    )
    assert fresh.info(sid).bytes == fresh.stored_bytes(sid)  # no double counting from retried writes
    writer.close()


def test_a_write_that_cannot_succeed_is_reported_never_dropped(own_redis):
    store = MemoryStore(own_redis.url, socket_timeout=0.5)
    sid = store.create_stream()
    writer = ChunkWriter(store, retry_for=0.5)
    ok = writer.submit(write_job(sid, make_chunk(0)))
    writer.flush()
    assert ok.result() > 0
    own_redis.kill()  # and it does not come back
    lost = writer.submit(write_job(sid, make_chunk(1)))
    later = writer.submit(write_job(sid, make_chunk(2)))
    with pytest.raises(WriteFailed, match="writing stream memory to Redis failed"):
        writer.flush(timeout=10)
    assert isinstance(lost.exception(timeout=5), Exception)
    assert isinstance(later.exception(timeout=5), WriteFailed)  # queued after the failure: not written
    with pytest.raises(WriteFailed):
        writer.submit(write_job(sid, make_chunk(3)))
    assert writer.stats["failed"] == 2 and writer.stats["acknowledged"] == 1


def test_writing_to_a_deleted_stream_fails_the_writer(store):
    sid = store.create_stream()
    writer = ChunkWriter(store)
    store.delete_stream(sid)
    writer.submit(write_job(sid, make_chunk(0)))
    with pytest.raises(WriteFailed, match="gone"):
        writer.flush(timeout=10)
