"""Bounded storage: the byte cap, the tiers `memory info` shows, retention faults, units."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from scenekv.errors import UserError
from scenekv.memory import MemoryStore, Retention, RollingConfig, RollingMemory
from scenekv.memory.retention import enforce, narrowed
from scenekv.vlm import load_backend

from support.redis_fixtures import memory_info
from support.tiny_model import tiny

PALETTE = [(220, 40, 40), (40, 180, 70), (40, 80, 220), (240, 210, 40), (240, 240, 240), (20, 20, 20)]


@lru_cache(maxsize=1)
def world():
    """The trained world model: SceneTiling splits its scenes where the background changes (the tiny
    random model sees one scene in anything), and compaction is about scenes."""
    return load_backend("scenekv-world")


def scenes_video(n_scenes: int, per_scene: int):
    """Scenes of ``per_scene`` frames of one palette background each, 1 s apart."""
    out = []
    for j in range(n_scenes):
        img = np.zeros((96, 128, 3), np.uint8)
        img[:] = PALETTE[j % len(PALETTE)]
        for _ in range(per_scene):
            out.append((float(len(out)), img.copy()))
    return out


def capped(store: MemoryStore, policy: Retention) -> RollingMemory:
    config = RollingConfig(window=6, chunk_frames=2, retention=policy)
    return RollingMemory.create(store, world(), carriers="pool:4", config=config)


@pytest.mark.parametrize("cap", [250_000, 60_000])
def test_a_capped_stream_never_exceeds_its_cap_and_memory_info_shows_the_tiers(
    store: MemoryStore, redis_url, prefix, cap
):
    """250 kB hold the last keep_full in full plus compacted older scenes; at 60 kB the cap wins over
    keep_full (full scenes are compacted, then dropped) and `memory info` says so."""
    mem = capped(store, Retention.tiers(keep_full=12.0, keep_compact=None, max_stream_bytes=cap))
    video = scenes_video(12, 6)
    peak = 0
    for i in range(0, len(video), 6):
        mem.append(video[i : i + 6])
        mem.flush()
        peak = max(peak, store.stored_bytes(mem.sid))
    assert peak <= cap, f"{peak} bytes stored with a cap of {cap}"
    assert mem.retention_reports and mem.writer.failed is None
    info = memory_info(mem.sid, redis_url, prefix)
    tiers = info["tiers"]
    assert tiers["retention"] == {"keep_s": 12.0, "max_bytes": cap}
    assert tiers["full"]["bytes"] + tiers["compacted"]["bytes"] == info["bytes"] <= cap
    newest = store.chunk_index(mem.sid)[-1]
    assert newest.last_pts >= video[-1][0] - 8  # the newest frames are stored (the window holds 6)
    if cap == 250_000:
        assert tiers["compacted"]["scenes"] >= 2 and tiers["cap_compacted_through"] is None
        # full KV covers at least the last keep_full seconds of what is stored
        assert tiers["full"]["from_pts"] <= newest.last_pts - 12.0
    else:
        assert tiers["cap_compacted_through"] is not None


def test_the_policy_a_stream_started_with_survives_a_restart(store: MemoryStore):
    policy = Retention.tiers(keep_full=30.0, keep_compact=3600.0, max_stream_bytes=10**6)
    mem = RollingMemory.create(
        store, tiny(), carriers="pool:4", config=RollingConfig(window=6, chunk_frames=2, retention=policy)
    )
    mem.append(scenes_video(1, 3))
    mem.detach()
    again = RollingMemory.attach(store, tiny(), mem.sid, config=RollingConfig(window=6, chunk_frames=2))
    assert again.config.retention == policy
    again.detach()


def test_a_failing_retention_run_leaves_the_writer_and_the_stream_alive(store: MemoryStore):
    """A damaged retrieval-key blob in Redis makes compaction fail (CorruptBlob, not retryable).
    Before, that failed the writer and every queued chunk with it; now the run is counted and the
    stream goes on writing."""
    mem = capped(store, Retention(keep_s=4.0))
    video = scenes_video(6, 6)
    mem.append(video[:12])
    mem.flush()
    keys = store.keys(mem.sid)
    for cid in store.chunk_ids(mem.sid):
        store.client.set(keys.chunk_key(cid), b"SKVK garbage")
    mem.append(video[12:])
    mem.flush()  # raises WriteFailed if the writer failed
    assert mem.retention_failures >= 1 and mem.writer.failed is None
    assert mem.writer.stats["housekeeping_failed"] >= 1
    assert store.info(mem.sid).last_pts >= video[-1][0] - 6  # later chunks were written
    mem.end()


def test_a_session_may_keep_less_than_the_server_allows_never_more():
    server = {"keep_s": 3600.0, "max_s": 86400.0, "max_bytes": 2_000_000}
    assert narrowed(server, {"keep_s": 60.0, "max_bytes": 10**9}) == {
        "keep_s": 60.0,
        "max_s": 86400.0,
        "max_bytes": 2_000_000,
    }
    assert narrowed({"keep_s": None}, {"keep_s": 5.0}) == {"keep_s": 5.0}
    with pytest.raises(UserError, match="unknown retention field"):
        narrowed(server, {"forever": 1})


def _synthetic_stream(store: MemoryStore, chunks: int) -> str:
    """``chunks`` small chunks written straight to Redis, two to a closed scene (no model run)."""
    import torch

    from scenekv.memory import chunk_keys
    from scenekv.vlm import FrameSpan, KVChunk

    sid = store.create_stream(source="push", model="m")
    g = torch.Generator().manual_seed(0)
    for i in range(chunks):
        kv = torch.randn(2, 2, 16, 16, generator=g)
        chunk = KVChunk(kv, kv.clone(), 20 + 16 * i, [FrameSpan(i, float(i), 0, 16)], "m")
        if i % 2 == 0:
            store.put_scene(sid, i // 2, float(i), {"closed": 1, "end": float(i + 2)})
        store.write_chunk(sid, chunk, chunk_keys(chunk, None), scene=i // 2, state={"last_pts": float(i)})
    return sid


def test_a_retention_run_reads_what_it_changes_not_the_whole_stream(own_redis):
    """Redis's own count of bytes sent during one capped run, on a stream of 100 and of 800 chunks,
    each a little over its cap: the run walks from the oldest chunk and stops, it does not list the
    stream (before, every run over a limit read every chunk's metadata and every scene)."""
    import redis

    store = MemoryStore(own_redis.url, "rscan:", ttl_s=None)
    client = redis.Redis.from_url(own_redis.url)
    sent = {}
    for n in (100, 800):
        sid = _synthetic_stream(store, n)
        enforce_cap = Retention(max_bytes=store.info(sid).bytes - 1)  # one chunk too many
        before = int(client.info("stats")["total_net_output_bytes"])
        report = enforce(store, sid, enforce_cap)
        sent[n] = int(client.info("stats")["total_net_output_bytes"]) - before
        assert report.compacted == [0] and store.info(sid).bytes <= enforce_cap.max_bytes  # detail first
    assert sent[800] < 1.5 * sent[100], sent


def test_answers_about_the_last_keep_full_are_exactly_those_of_an_uncapped_stream(store: MemoryStore):
    """Retention only ever touches what is older than keep_full (here the cap leaves room for it):
    a question anchored inside the last keep_full gets the same tokens as on a stream kept whole."""
    from scenekv.qa.engine import QAEngine
    from scenekv.qa.memory_view import MemoryView
    from scenekv.vlm import SamplingParams

    video = scenes_video(10, 6)
    kept = capped(store, Retention.tiers(keep_full=15.0, keep_compact=None, max_stream_bytes=400_000))
    whole = capped(store, Retention())
    for mem in (kept, whole):
        for i in range(0, len(video), 6):
            mem.append(video[i : i + 6])
        mem.end()
    assert kept.retention_reports and store.info(kept.sid).bytes < store.info(whole.sid).bytes
    engine = QAEngine(world())
    for at in (50.0, 55.0):  # inside the last 15 s of a 60 s stream
        answers = [
            engine.ask(
                MemoryView(store, m.sid),
                "What colour is the background?",
                at=at,
                top_k=0,
                params=SamplingParams(max_new_tokens=6),
            )
            for m in (kept, whole)
        ]
        texts = ["".join(a) for a in answers]
        assert texts[0] == texts[1] and answers[0].evidence == answers[1].evidence
