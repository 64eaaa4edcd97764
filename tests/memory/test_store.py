"""Chunk format and the Redis schema: bit-exact KV, isolation of streams, deletion, expiry, events."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import redis
import torch

from scenekv.errors import UserError
from scenekv.memory import (
    ChunkKeys,
    ChunkNotFound,
    CorruptBlob,
    DeviceLRU,
    MemoryStore,
    StreamExists,
    StreamNotFound,
    chunk_id,
    chunk_keys,
    decode_chunk,
    encode_chunk,
)
from scenekv.memory.local_redis import LocalRedis
from scenekv.memory.migrate_untagged import migrate_untagged
from scenekv.vlm import FrameSpan, KVChunk

from support.redis_fixtures import keys_under
from support.tiny_model import frames, session


@pytest.fixture(scope="module")
def tiny_chunks():
    """Three real chunks (fp32) from the tiny model, with the frames' signatures."""
    sess = session("pool:16")
    records = sess.append(frames(12, start=10.0))
    sigs = torch.stack([r.signature for r in records])
    return [(sess.export(i, i + 3), sigs[i : i + 4]) for i in (0, 4, 8)]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32}[t.element_size()])


def _bf16_chunk(chunk: KVChunk) -> KVChunk:
    keys, values = chunk.keys.to(torch.bfloat16), chunk.values.to(torch.bfloat16)
    # values a lossy format must not touch: NaN payload, infinities, signed zero, subnormals
    specials = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-40, -3e-39])
    keys.view(-1)[: len(specials)] = specials.to(torch.bfloat16)
    return KVChunk(keys, values, chunk.position, chunk.frames, chunk.model_id, chunk.carriers, chunk.span)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_kv_round_trip_through_redis_is_bit_exact(store, tiny_chunks, dtype):
    chunk, sigs = tiny_chunks[1]
    if dtype == "bf16":
        chunk = _bf16_chunk(chunk)
    sid = store.create_stream(model=chunk.model_id, carriers=chunk.carriers)
    stored = store.write_chunk(sid, chunk, chunk_keys(chunk, sigs))
    (back,) = store.load_chunks(sid, [chunk_id(chunk)])
    assert back.keys.dtype == chunk.keys.dtype and back.keys.shape == chunk.keys.shape
    assert torch.equal(_bits(back.keys), _bits(chunk.keys))
    assert torch.equal(_bits(back.values), _bits(chunk.values))
    assert (back.position, back.span, back.frames, back.model_id, back.carriers) == (
        chunk.position,
        chunk.span,
        chunk.frames,
        chunk.model_id,
        chunk.carriers,
    )
    assert (back.first_pts, back.last_pts) == (14.0, 17.0)
    assert store.info(sid).bytes == stored == store.stored_bytes(sid)
    # compact: the raw tensors plus a small header
    assert len(encode_chunk(chunk)) < chunk.nbytes + 1024


def test_retrieval_keys_load_without_kv_and_match_the_chunk(store, tiny_chunks):
    sid = store.create_stream()
    for chunk, sigs in tiny_chunks:
        store.write_chunk(sid, chunk, chunk_keys(chunk, sigs))
    keys = store.load_keys(sid)
    assert list(keys) == ["0", "4", "8"]
    chunk, sigs = tiny_chunks[2]
    k = keys["8"]
    assert k.mean_keys.shape == (chunk.keys.shape[0], chunk.keys.shape[1], chunk.keys.shape[3])
    # position-free: the session's content keys (RoPE undone), not the mean of the cached keys
    assert torch.allclose(k.mean_keys, chunk.content_keys)
    assert not torch.allclose(k.mean_keys, chunk.keys.mean(dim=2), atol=1e-3)
    expected = torch.nn.functional.normalize(sigs.mean(0), dim=0)
    assert torch.allclose(k.feature, expected, atol=1e-6)
    metas = store.chunk_index(sid)
    assert [(m.cid, m.first_pts, m.last_pts, m.frames) for m in metas] == [
        ("0", 10.0, 13.0, 4),
        ("4", 14.0, 17.0, 4),
        ("8", 18.0, 21.0, 4),
    ]
    assert metas[1].position == tiny_chunks[1][0].position and metas[1].tokens == tiny_chunks[1][0].tokens


def test_corrupt_or_foreign_blobs_fail_loudly(tiny_chunks):
    chunk, _ = tiny_chunks[0]
    blob = bytearray(encode_chunk(chunk))
    blob[-5] ^= 0xFF
    with pytest.raises(CorruptBlob, match="CRC32"):
        decode_chunk(bytes(blob))
    with pytest.raises(CorruptBlob, match="not a SceneKV record"):
        decode_chunk(b"\x80\x04\x95pickle-ish payload")
    with pytest.raises(CorruptBlob, match="payload"):
        decode_chunk(encode_chunk(chunk)[:-4])


def test_load_is_one_round_trip_and_the_lru_serves_repeats(own_redis, tiny_chunks):
    store = MemoryStore(own_redis.url)  # a private server: its command counters are ours alone
    sid = store.create_stream()
    for chunk, sigs in tiny_chunks:
        store.write_chunk(sid, chunk, chunk_keys(chunk, sigs))
    lru = DeviceLRU(max_bytes=tiny_chunks[0][0].nbytes + tiny_chunks[1][0].nbytes)
    store.client.config_resetstat()
    got = store.load_chunks(sid, ["8", "0", "4"], lru=lru)
    stats = store.client.info("commandstats")
    assert [c.first_pts for c in got] == [18.0, 10.0, 14.0]  # the order asked for
    calls = {k: v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat")}
    # every chunk in one pipelined round trip, with the stream generation that keys the LRU
    assert calls == {"cmdstat_mget": 1, "cmdstat_hget": 1}
    assert len(lru) == 2 and lru.bytes <= lru.max_bytes  # bounded by bytes: the oldest went out
    again = store.load_chunks(sid, ["0", "4"], lru=lru)
    assert lru.hits == 2 and again[0] is got[1]
    store.drop_chunk(sid, "8")
    with pytest.raises(ChunkNotFound):
        store.load_chunks(sid, ["8"])
    assert store.load_chunks(sid, ["8", "0"], strict=False)[0].first_pts == 10.0


def test_two_streams_never_see_each_others_keys(store, tiny_chunks, redis_client, prefix):
    a = store.create_stream("cam")
    b = store.create_stream("cam2")  # "cam" is a string prefix of "cam2": keys must still not mix
    for chunk, sigs in tiny_chunks[:2]:
        store.write_chunk(a, chunk, chunk_keys(chunk, sigs))
    store.write_chunk(b, tiny_chunks[2][0], chunk_keys(*tiny_chunks[2]))
    store.put_scene(a, 0, 10.0, {"closed": 0}, event="scene.opened")
    assert store.chunk_ids(a) == ["0", "4"] and store.chunk_ids(b) == ["8"]
    assert store.scenes(b) == [] and [s.index for s in store.scenes(a)] == [0]
    assert [t for _, t, _ in store.events(b)] == ["stream.created"]
    assert store.info(a).chunks == 2 and store.info(b).chunks == 1
    with pytest.raises(ChunkNotFound):
        store.load_chunks(b, ["0"])
    # a second store with another prefix on the same Redis sees nothing of the first
    other = MemoryStore(store.url, prefix + "other:")
    assert other.list_streams() == [] and not other.exists("cam")
    assert sorted(store.list_streams()) == ["cam", "cam2"]
    store.delete_stream("cam")
    assert store.chunk_ids(b) == ["8"] and store.exists("cam2")


def test_delete_removes_every_key_of_the_stream_in_one_call(store, tiny_chunks, redis_client, prefix):
    sid = store.create_stream("doomed")
    keep = store.create_stream("kept")
    for chunk, sigs in tiny_chunks:
        store.write_chunk(sid, chunk, chunk_keys(chunk, sigs), scene=0)
    store.put_scene(sid, 0, 10.0, {"closed": 1, "end": 22.0}, event="scene.closed")
    store.claim(sid, "me", 30)
    store.write_chunk(keep, tiny_chunks[0][0], chunk_keys(*tiny_chunks[0]))
    assert len(keys_under(redis_client, f"{prefix}stream:{{doomed}}")) >= 10
    n = store.delete_stream(sid)
    assert n >= 10
    left = keys_under(redis_client, prefix)
    assert not [k for k in left if k.startswith(f"{prefix}stream:{{doomed}}")]
    assert any(k.startswith(f"{prefix}stream:{{kept}}") for k in left)
    assert store.list_streams() == ["kept"]
    with pytest.raises(StreamNotFound):
        store.info(sid)
    assert store.delete_stream(sid) == 0


def test_stream_ids_are_validated_and_not_reused(store):
    for bad in ["", "a:b", "a*", "x" * 65, "sp ace", "{tag}"]:
        with pytest.raises(UserError, match="bad stream id"):
            store.create_stream(bad)
    store.create_stream("once")
    with pytest.raises(StreamExists):
        store.create_stream("once")


def test_writes_to_a_deleted_stream_are_refused_not_resurrected(store, tiny_chunks, redis_client, prefix):
    sid = store.create_stream()
    store.delete_stream(sid)
    with pytest.raises(StreamNotFound):
        store.write_chunk(sid, tiny_chunks[0][0], chunk_keys(*tiny_chunks[0]))
    assert keys_under(redis_client, f"{prefix}stream:") == set()


def test_a_stream_stored_before_the_hash_tag_is_moved_and_loads(store, tiny_chunks, redis_client):
    sid = store.create_stream("old")
    chunk, sigs = tiny_chunks[0]
    store.put_scene(sid, 0, 10.0, {"closed": 1, "end": 13.0}, event="scene.closed")
    store.write_chunk(sid, chunk, chunk_keys(chunk, sigs), scene=0)
    k = store.keys(sid)
    for name in keys_under(redis_client, k.base):  # back to the layout before the hash tag
        redis_client.rename(name, k.untagged_base + name[len(k.base) :])
    assert not store.exists(sid)
    assert migrate_untagged(store) == ["old"]
    assert migrate_untagged(store) == []  # nothing left: a second start does nothing
    assert not redis_client.exists(k.untagged_base) and not keys_under(redis_client, k.untagged_base + ":")
    assert store.list_streams() == ["old"] and 0 < redis_client.pttl(k.base) <= 3600 * 1.25 * 1000
    assert torch.equal(store.load_chunks(sid, ["0"])[0].keys, chunk.keys)
    assert [(s.index, s.chunks) for s in store.scenes(sid)] == [(0, ["0"])]


def test_idle_streams_expire_and_activity_keeps_them(redis_url, prefix, tiny_chunks, redis_client):
    store = MemoryStore(redis_url, prefix, ttl_s=0.8)
    idle = store.create_stream("idle")
    busy = store.create_stream("busy")
    for s in (idle, busy):
        store.write_chunk(s, tiny_chunks[0][0], chunk_keys(*tiny_chunks[0]))
    for _ in range(5):  # busy keeps being touched, idle does not
        time.sleep(0.3)
        store.touch(busy)
    assert not keys_under(redis_client, f"{prefix}stream:{{idle}}")
    assert store.exists(busy) and store.chunk_ids(busy) == ["0"]
    assert store.list_streams() == ["busy"]
    assert 0 < store.info(busy).ttl_s <= 1.0


def test_events_are_a_capped_log_readable_from_any_point(store):
    sid = store.create_stream()
    store.put_scene(sid, 0, 0.0, {"closed": 1, "end": 5.0}, event="scene.closed", data={"end": 5.0})
    store.put_scene(sid, 0, 0.0, {"closed": 1, "end": 5.0}, event="scene.closed")  # a retry: no duplicate
    store.set_caption(sid, 0, "a red room")
    events = store.events(sid)
    assert [t for _, t, _ in events] == ["stream.created", "scene.closed", "scene.captioned"]
    assert events[1][2] == {"scene": 0, "end": 5.0}
    assert store.scene(sid, 0).caption == "a red room"
    assert [t for _, t, _ in store.events(sid, after=events[1][0])] == ["scene.captioned"]
    small = MemoryStore(store.url, store.prefix, events_maxlen=10)
    for i in range(500):
        small.add_event(sid, "tick", {"i": i})
    assert small.info(sid).events < 200  # MAXLEN ~: approximately capped


def test_memory_command_lists_accounts_and_deletes(store, tiny_chunks, capsys):
    import argparse
    import json

    from scenekv.cli import memory as cli

    sid = store.create_stream("cli", model="m", carriers="pool:16")
    store.write_chunk(sid, tiny_chunks[0][0], chunk_keys(*tiny_chunks[0]))
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    common = ["--redis-url", store.url, "--prefix", store.prefix, "--json"]
    cli.run(parser.parse_args(["list", *common]))
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["sid"], row["chunks"], row["bytes"]) == ("cli", 1, store.stored_bytes(sid))
    cli.run(parser.parse_args(["delete", "cli", *common]))
    assert json.loads(capsys.readouterr().out)["deleted_keys"] >= 5
    with pytest.raises(UserError, match="no stream"):
        cli.run(parser.parse_args(["delete", "cli", *common]))


def test_retrieval_keys_without_a_visual_feature_round_trip():
    from scenekv.memory import decode_keys, encode_keys

    mean = torch.randn(2, 2, 16)
    back = decode_keys(encode_keys(ChunkKeys(mean, torch.zeros(0))))
    assert torch.equal(back.mean_keys, mean) and back.feature.numel() == 0


def test_repeated_writes_add_each_event_once(store, tiny_chunks):
    """A writer retries a step whose reply was lost: the repeat must not add the event again."""
    sid = store.create_stream("ev")
    for _ in range(2):
        store.update_stream(sid, {"status": "detached"}, event="stream.detached", event_key="detach:tok")
    store.write_chunk(sid, tiny_chunks[0][0], chunk_keys(*tiny_chunks[0]), scene=3)
    store.put_scene(sid, 3, 10.0, {"closed": 1, "end": 14.0})
    for _ in range(2):
        store.drop_scene(sid, 3, event="scene.dropped", data={"scene": 3})
    types = [t for _, t, _ in store.events(sid)]
    assert types == ["stream.created", "stream.detached", "scene.dropped"]
    store.touch(sid)  # the dedup marks are a key of the stream like any other: touched, then deleted
    store.delete_stream(sid)
    assert not keys_under(store.client, f"{store.prefix}stream:{{ev}}")


def _synthetic(first: int, seed: int) -> KVChunk:
    g = torch.Generator().manual_seed(seed)
    kv = [torch.randn(2, 2, 8, 16, generator=g) for _ in range(2)]
    return KVChunk(
        *kv, position=50, frames=[FrameSpan(first, float(first), 0, 8)], model_id="m", carriers="pool:4"
    )


def test_the_lru_never_serves_a_deleted_streams_kv_and_honours_the_device(store):
    lru = DeviceLRU(max_bytes=1 << 20)
    old, new = _synthetic(0, seed=1), _synthetic(0, seed=2)
    no_keys = ChunkKeys(torch.zeros(2, 2, 16), torch.zeros(0))
    store.create_stream("re")
    store.write_chunk("re", old, no_keys)
    (got,) = store.load_chunks("re", ["0"], lru=lru)
    assert torch.equal(got.keys, old.keys)
    (on_meta,) = store.load_chunks("re", ["0"], lru=lru, device="meta")  # a hit, moved as asked
    assert lru.hits == 1 and on_meta.keys.device.type == "meta" and got.keys.device.type == "cpu"
    store.delete_stream("re")
    time.sleep(0.01)
    store.create_stream("re")  # same id, a new stream
    store.write_chunk("re", new, no_keys)
    (got,) = store.load_chunks("re", ["0"], lru=lru)
    assert torch.equal(got.keys, new.keys)


@pytest.fixture
def loading_aof(own_redis):
    """A Redis data directory whose AOF takes ~1.5 s to load (key-load-delay: 1 ms per key)."""
    client = redis.Redis.from_url(own_redis.url)
    pipe = client.pipeline(transaction=False)
    for i in range(1500):
        pipe.set(f"k{i}", "x")
    pipe.execute()
    client.close()
    own_redis.kill()  # appendfsync always: everything is in the AOF
    return own_redis.directory, ["--key-load-delay", "1000"]


def _children_in(directory) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"--dir {directory}"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_local_redis_that_is_loading_is_waited_for(loading_aof):
    directory, args = loading_aof
    child = LocalRedis(directory, start_timeout=0.2, load_timeout=60, extra_args=args)
    try:
        assert redis.Redis.from_url(child.url).dbsize() == 1500
    finally:
        child.stop()


def test_a_failed_local_redis_start_kills_the_child_and_shows_its_log(loading_aof):
    directory, args = loading_aof
    try:
        with pytest.raises(UserError, match="(?s)still loading.*Redis is starting"):
            LocalRedis(directory, start_timeout=0.1, load_timeout=0.3, extra_args=args)
        assert _children_in(directory) == []  # not left running
    finally:
        for pid in _children_in(directory):  # only if the assertion above failed
            os.kill(pid, signal.SIGKILL)
