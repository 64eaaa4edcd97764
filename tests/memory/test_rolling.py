"""RollingMemory: bounded device window, chunks and scenes in Redis, restart continuity, retention."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import torch

from scenekv.errors import UserError
from scenekv.ingest import open_source
from scenekv.memory import (
    ChunkKeys,
    ChunkMeta,
    ChunkWriter,
    MemoryStore,
    Retention,
    RollingConfig,
    RollingMemory,
    StreamBusy,
    WriteFailed,
    WriterBusy,
    decode_chunk,
    enforce,
    representative,
)
from scenekv.vlm import FrameSpan, KVChunk
from scenekv.world.cut_video import make_video

from support.tiny_model import tiny

CUTS = (12.5, 30.5)


@pytest.fixture(scope="module")
def video_frames(tmp_path_factory):
    """48 frames at 1 fps of a drifting pattern with hard cuts at 12.5 s and 30.5 s."""
    path = make_video(
        tmp_path_factory.mktemp("v") / "cuts.mp4", duration=48, fps=4, size=(160, 120), cuts=CUTS
    )
    with open_source(path, fps=1.0) as src:
        return [(f.pts, f.image) for f in src]


def feed(memory: RollingMemory, frames, batch: int = 4):
    records, closed = [], []
    for i in range(0, len(frames), batch):
        out = memory.append(frames[i : i + batch])
        records += out.records
        closed += out.closed
        assert len(memory.session.resident_frames) <= memory.config.window
    return records, closed


SMALL = RollingConfig(window=10, chunk_frames=4)


def test_device_holds_only_the_window_and_redis_the_rest(store, video_frames):
    memory = RollingMemory.create(store, tiny(), carriers="pool:4", config=SMALL, source="cuts.mp4")
    records, closed = feed(memory, video_frames)
    session = memory.session
    assert len(session.resident_frames) <= 10
    resident_tokens = sum(r.kv_tokens for r in records if r.index in session.resident_frames)
    assert session.cache.get_seq_length() == session.sink_len + resident_tokens
    memory.flush()
    metas = store.chunk_index(memory.sid)
    stored = [i for m in metas for i in range(m.first_frame, m.last_frame + 1)]
    assert stored + session.resident_frames == list(range(48))  # every frame: in Redis or on device
    assert all(m.frames <= 4 for m in metas)
    # chunks never straddle a scene boundary, and each scene lists exactly its chunks
    scenes = {s.index: s for s in store.scenes(memory.sid)}
    assert [round(s.start) for s in scenes.values()] == [0, 13, 31]
    for m in metas:
        s = scenes[m.scene]
        assert s.start <= m.first_pts and (s.end is None or m.last_pts < s.end)
        assert m.cid in s.chunks
    assert [s.start for s in closed] == [0.0, 13.0]
    info = memory.info()
    assert info.chunks == len(metas) and info.scenes == 3 and info.bytes == store.stored_bytes(memory.sid)
    assert info.extra["resident_frames"] == len(session.resident_frames)
    assert info.source == "cuts.mp4" and info.carriers == "pool:4" and info.status == "live"
    memory.detach()


def test_restart_continues_positions_chunks_scenes_and_events(redis_url, prefix, video_frames):
    # reference: one process sees the whole stream
    ref_store = MemoryStore(redis_url, prefix)
    ref = RollingMemory.create(ref_store, tiny(), carriers="pool:4", config=SMALL, sid="ref")
    ref_records, _ = feed(ref, video_frames)
    ref.end()

    first = RollingMemory.create(
        MemoryStore(redis_url, prefix), tiny(), carriers="pool:4", config=SMALL, sid="cam"
    )
    before, _ = feed(first, video_frames[:21])
    first.detach()  # process stops
    assert first.session.resident_frames == []  # its window went to Redis
    store = MemoryStore(redis_url, prefix)  # new process, new objects, same sid
    again = RollingMemory.attach(store, tiny(), "cam", config=SMALL)
    assert again.last_pts == video_frames[20][0]
    after, _ = feed(again, video_frames[21:])
    again.end()
    records = before + after
    assert [r.index for r in records] == list(range(48))
    assert [r.position for r in records] == [r.position for r in ref_records]  # positions go on
    assert after[0].position == before[-1].position + before[-1].kv_tokens
    scenes = [(s.index, s.start, s.end, s.closed) for s in store.scenes("cam")]
    assert scenes == [(s.index, s.start, s.end, s.closed) for s in ref_store.scenes("ref")]
    metas = store.chunk_index("cam")
    assert [i for m in metas for i in range(m.first_frame, m.last_frame + 1)] == list(range(48))
    # stored KV of the resumed part sits at the positions the session gave it
    (late,) = store.load_chunks("cam", [metas[-1].cid])
    assert late.position == records[metas[-1].first_frame].position
    types = [t for _, t, _ in store.events("cam")]
    assert types[0] == "stream.created" and types[-1] == "stream.ended"
    assert types.index("stream.detached") < types.index("stream.attached")
    assert types.count("scene.closed") == 3 and store.info("cam").status == "ended"


def test_dedup_state_survives_a_restart(store, video_frames):
    other, still = video_frames[0][1], video_frames[20][1]  # two different scenes
    memory = RollingMemory.create(store, tiny(), carriers="pool:4+dedup:0.95", config=SMALL, sid="dd")
    memory.append([(0.0, other), (1.0, still)])
    memory.detach()
    again = RollingMemory.attach(store, tiny(), "dd", config=SMALL)
    (rec,) = again.append([(2.0, still)]).records  # the same picture after the restart
    assert rec.position is None and rec.kept_as == 1  # recognised as a repeat of frame 1
    again.detach()


def test_a_crashed_writer_holds_its_lease_until_taken_over(store, video_frames):
    memory = RollingMemory.create(store, tiny(), carriers="pool:4", config=SMALL, sid="crash")
    feed(memory, video_frames[:24])
    memory.flush()  # written, then the process dies without detaching
    acked = store.chunk_index("crash")
    with pytest.raises(StreamBusy, match="another process"):
        RollingMemory.attach(store, tiny(), "crash", config=SMALL)
    again = RollingMemory.attach(store, tiny(), "crash", config=SMALL, takeover=True)
    last = acked[-1]
    assert again.session.next_index > last.last_frame  # numbering continues after what was stored
    with pytest.raises(UserError, match="not after the previous frame"):
        again.append(video_frames[:1])
    records, _ = feed(again, video_frames[again.session.next_index :])
    assert records[0].position >= last.position + last.tokens
    again.end()
    ids = [m.cid for m in store.chunk_index("crash")]
    assert ids[: len(acked)] == [m.cid for m in acked] and len(ids) == len(set(ids))


def test_retention_compacts_old_scenes_and_keeps_the_byte_cap(store, video_frames):
    config = RollingConfig(window=6, chunk_frames=2)
    probe = RollingMemory.create(store, tiny(), carriers="pool:4", config=config, sid="probe")
    feed(probe, video_frames[:8])
    probe.flush()
    chunk_bytes = max(m.bytes for m in store.chunk_index("probe"))
    cap = 9 * chunk_bytes
    policy = Retention(keep_bytes=6 * chunk_bytes, max_bytes=cap)
    config = RollingConfig(window=6, chunk_frames=2, retention=policy)
    memory = RollingMemory.create(store, tiny(), carriers="pool:4", config=config, sid="ret")
    for i in range(0, 48, 4):
        memory.append(video_frames[i : i + 4])
        memory.flush()
        assert store.stored_bytes("ret") <= cap  # the hard cap holds at every step
    memory.end()
    info = store.info("ret")
    assert info.bytes == store.stored_bytes("ret") <= cap
    events = [(t, d) for _, t, d in store.events("ret")]
    compacted = {d["scene"]: d for t, d in events if t == "scene.compacted"}
    assert 0 in compacted and compacted[0]["dropped"] >= 2  # the first scene (13 frames) was compacted
    assert int(compacted[0]["kept"]) < 13  # its representative is one of its own chunks
    for s in store.scenes("ret"):
        assert not s.compacted or len(s.chunks) <= 1
    stored = store.chunk_index("ret")
    assert stored[-1].last_frame == 47  # the newest frames are always kept in full
    covered = {i for m in stored for i in range(m.first_frame, m.last_frame + 1)}
    assert set(range(40, 48)) <= covered
    assert memory.retention_reports  # visible to metrics


def test_compaction_keeps_the_most_typical_chunk_then_the_cap_drops_whole_scenes(store):
    sid = store.create_stream()
    store.put_scene(sid, 0, 0.0, {"closed": 1, "end": 8.0})
    store.put_scene(sid, 1, 8.0, {"closed": 0})
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    features = [a, a + 0.1 * b, a + 0.3 * b, b]  # the mean points between a and b, nearest to a + .3b
    for i, f in enumerate(features):
        store.write_chunk(sid, synthetic_chunk(2 * i), ChunkKeys(torch.zeros(2, 2, 16), f), scene=0)
    store.write_chunk(sid, synthetic_chunk(8), ChunkKeys(torch.zeros(2, 2, 16), b), scene=1)
    size = store.chunk_index(sid)[0].bytes
    report = enforce(store, sid, Retention(keep_bytes=3 * size))
    assert report.compacted == [0] and sorted(report.dropped_chunks) == []
    scene = store.scene(sid, 0)
    assert scene.compacted and scene.chunks == ["4"] and scene.extra["representative"] == "4"
    assert store.chunk_ids(sid) == ["4", "8"]
    assert store.info(sid).bytes == sum(m.bytes for m in store.chunk_index(sid)) == store.stored_bytes(sid)
    last = store.chunk_index(sid)[-1].bytes
    report = enforce(store, sid, Retention(max_bytes=last))
    assert report.dropped_chunks == ["4"] and report.dropped_scenes == [0]
    assert [s.index for s in store.scenes(sid)] == [1] and store.info(sid).bytes == last
    assert [t for _, t, _ in store.events(sid)][-2:] == ["scene.compacted", "scene.dropped"]


def test_without_features_the_middle_chunk_represents_the_scene():
    metas = [ChunkMeta(str(i), float(i), float(i), 0, 1, 1, i, i, 1, 0, 1) for i in range(5)]
    assert representative(metas, {}) == "2"


def synthetic_chunk(first: int, tokens: int = 8) -> KVChunk:
    g = torch.Generator().manual_seed(first)
    kv = [torch.randn(2, 2, tokens, 16, generator=g) for _ in range(2)]
    frames = [
        FrameSpan(first, float(first), 0, tokens // 2),
        FrameSpan(first + 1, first + 1.0, tokens // 2, tokens // 2),
    ]
    return KVChunk(*kv, position=50 + first * tokens, frames=frames, model_id="m", carriers="pool:4")


def test_window_must_leave_room_for_the_scene_lookahead(store):
    with pytest.raises(UserError, match="window"):
        RollingMemory.create(store, tiny(), config=RollingConfig(window=6, chunk_frames=4))


def test_attach_refuses_another_model_and_unknown_streams(store):
    memory = RollingMemory.create(store, tiny(), carriers="pool:4", config=SMALL, sid="m")
    memory.detach()
    store.update_stream("m", {"model": "llava-hf/other"})
    with pytest.raises(UserError, match="recorded with model"):
        RollingMemory.attach(store, tiny(), "m")
    with pytest.raises(UserError, match="no stream"):
        RollingMemory.attach(store, tiny(), "nope")


@pytest.mark.parametrize("kv_dtype", ["exact", "int8"])
def test_stored_chunk_decodes_to_the_exported_kv(store, video_frames, kv_dtype):
    """``exact`` storage is bit for bit; the int8 default is within 1 % of the largest entry."""
    config = dataclasses.replace(SMALL, kv_dtype=kv_dtype)
    memory = RollingMemory.create(store, tiny(), carriers="pool:4", config=config, sid=kv_dtype)
    memory.append(video_frames[:6])
    expected = memory.session.export(0, 3)
    memory.detach()
    got = decode_chunk(store.client.get(store.keys(kv_dtype).chunk("0")))
    if kv_dtype == "exact":
        assert torch.equal(got.keys, expected.keys) and torch.equal(got.values, expected.values)
        return
    for mine, theirs in ((got.keys, expected.keys), (got.values, expected.values)):
        assert not torch.equal(mine, theirs)  # really quantized
        assert (mine - theirs).abs().max() <= 0.01 * theirs.abs().max()


def crash(memory: RollingMemory) -> None:
    """The process dies: what Redis acknowledged stays; the device window and queued-to-be-cut
    frames, the lease timer and the writer thread are simply gone (no detach)."""
    memory.flush()
    lease = getattr(memory, "_lease", None)
    if lease is not None:
        lease.stop()
    memory.writer.close()


def chunk_rows(store: MemoryStore, sid: str) -> list[tuple]:
    return [(m.first_frame, m.last_frame, m.position, m.span, m.scene) for m in store.chunk_index(sid)]


def scene_rows(store: MemoryStore, sid: str) -> list[tuple]:
    return [(s.index, s.start, s.end, s.closed, s.frames, s.chunks) for s in store.scenes(sid)]


def test_after_a_crash_the_frames_only_on_the_device_are_encoded_again(store, video_frames):
    frames = video_frames[:36]  # cuts at 12.5 s and 30.5 s: two scenes close, a third is open
    config = RollingConfig(window=12, chunk_frames=4)
    ref = RollingMemory.create(store, tiny(), carriers="pool:4", config=config, sid="ref")
    feed(ref, frames)
    ref.end()

    first = RollingMemory.create(store, tiny(), carriers="pool:4", config=config, sid="cam")
    feed(first, frames[:20])  # scene 0 closes at frame 17; chunks 0-3 and 4-7 are stored
    crash(first)
    stored = store.chunk_index("cam")
    assert stored[-1].last_frame == 7
    again = RollingMemory.attach(store, tiny(), "cam", config=config, takeover=True)
    assert store.info("cam").last_pts == again.last_pts == stored[-1].last_pts  # last STORED frame
    assert again.session.next_index == 8
    assert again.session.next_position == stored[-1].position + stored[-1].span
    feed(again, [f for f in frames if f[0] > again.last_pts])  # the source resumes after last_pts
    again.end()

    assert chunk_rows(store, "cam") == chunk_rows(store, "ref")
    covered = [i for m in store.chunk_index("cam") for i in range(m.first_frame, m.last_frame + 1)]
    assert covered == list(range(36))  # every frame exactly once
    assert scene_rows(store, "cam") == scene_rows(store, "ref")
    closed = [d["scene"] for _, t, d in store.events("cam") if t == "scene.closed"]
    assert closed == [d["scene"] for _, t, d in store.events("ref") if t == "scene.closed"] == [0, 1, 2]


def test_a_taken_over_writer_cannot_write_any_more(store, video_frames):
    a = RollingMemory.create(store, tiny(), carriers="pool:4", config=SMALL, sid="two")
    a.append(video_frames[:12])  # chunk 0-3 leaves the window
    a.flush()
    before = store.stream_fields("two")
    b = RollingMemory.attach(store, tiny(), "two", config=SMALL, takeover=True)
    a.append(video_frames[12:16])  # A does not know yet: chunk 4-7 is cut and queued
    with pytest.raises(WriteFailed, match="another process took over this stream"):
        a.flush()
    with pytest.raises(UserError, match="took over"):
        a.append(video_frames[16:17])
    assert store.chunk_ids("two") == ["0"]  # nothing of A's reached Redis after the takeover
    after = store.stream_fields("two")
    for field in ("next_index", "next_pos", "last_pts", "tiler"):
        assert after[field] == before[field]
    assert b.last_pts == video_frames[3][0]  # B resumes after the last chunk stored
    b.append(video_frames[4:6])  # the new owner writes normally
    b.detach()
    assert store.info("two").next_index == 6 and store.chunk_ids("two") == ["0", "4"]


def test_the_lease_is_renewed_while_no_frames_arrive(store):
    config = RollingConfig(window=10, chunk_frames=4, lease_s=0.6)
    memory = RollingMemory.create(store, tiny(), carriers="pool:4", config=config, sid="idle")
    time.sleep(1.5)  # idle for more than two leases: the timer keeps it
    with pytest.raises(StreamBusy, match="another process"):
        RollingMemory.attach(store, tiny(), "idle", config=config)
    memory.detach()
    RollingMemory.attach(store, tiny(), "idle", config=config).detach()  # released on detach


def test_attach_refreshes_the_ttl_of_every_key(redis_url, prefix, redis_client, video_frames):
    ttl_store = MemoryStore(redis_url, prefix, ttl_s=2.0)  # keys live 2.5 s after a write
    memory = RollingMemory.create(ttl_store, tiny(), carriers="pool:4", config=SMALL, sid="ttl")
    memory.append(video_frames[:12])
    memory.detach()
    time.sleep(1.2)
    again = RollingMemory.attach(ttl_store, tiny(), "ttl", config=SMALL)
    keys = [k for k in redis_client.scan_iter(match=f"{prefix}stream:{{ttl}}*") if not k.endswith(b":owner")]
    assert len(keys) > 8  # hash, chunks, blobs and keys, meta, scenes, events ...
    ttls = {k.decode(): redis_client.pttl(k) for k in keys}
    assert min(ttls.values()) > 2000, ttls
    again.detach()


def test_a_write_that_cannot_be_queued_leaves_no_half_updated_stream(store, video_frames):
    writer = ChunkWriter(store, max_jobs=1, put_timeout=0.05)
    gate = threading.Event()
    writer.submit(lambda st: gate.wait(10))  # Redis "stalls": the queue is full
    memory = RollingMemory.create(store, tiny(), carriers="pool:4", config=SMALL, sid="busy", writer=writer)
    try:
        with pytest.raises(WriterBusy):
            memory.append(video_frames[:4])  # opening scene 0 cannot be queued
        assert memory.tiler.state()["count"] == 4  # yet every frame reached the scene tiler
        gate.set()
        writer.flush(5)
        with pytest.raises(WriteFailed, match="attach the stream again"):
            memory.append(video_frames[4:5])
    finally:
        gate.set()
        writer.close(timeout=5)


def test_compaction_does_not_rescan_the_stream_once_old_scenes_are_done(store):
    sid = store.create_stream()
    store.put_scene(sid, 0, 0.0, {"closed": 1, "end": 8.0})
    store.put_scene(sid, 1, 8.0, {"closed": 1, "end": 16.0})
    store.put_scene(sid, 2, 16.0, {"closed": 0})
    feature = torch.tensor([1.0, 0.0])
    for first, scene in ((0, 0), (2, 0), (8, 1), (10, 1), (16, 2), (18, 2)):
        store.write_chunk(sid, synthetic_chunk(first), ChunkKeys(torch.zeros(2, 2, 16), feature), scene=scene)
    store.update_stream(sid, {"last_pts": 19.0})
    policy = Retention(keep_s=8.0)
    report = enforce(store, sid, policy)
    assert report.scanned and report.compacted == [0]  # scene 1 ended 3 s ago: kept in full
    # scene 0's representative stays old forever, and the open scene's first chunks are old too:
    # neither may make every later export list the whole stream again
    for first in (20, 22):
        store.write_chunk(sid, synthetic_chunk(first), ChunkKeys(torch.zeros(2, 2, 16), feature), scene=2)
        store.update_stream(sid, {"last_pts": first + 1.0})
        report = enforce(store, sid, policy)
        assert not report.scanned and not report.compacted
    store.update_stream(sid, {"last_pts": 26.0})  # scene 1 ended 10 s ago now
    report = enforce(store, sid, policy)
    assert report.scanned and report.compacted == [1]
    assert not enforce(store, sid, policy).scanned


def test_attach_refuses_a_stream_recorded_with_other_weights_of_the_same_model(store):
    """The world model is retrained in place (same folder, same id): its streams carry the run's
    revision, and one recorded by another run (or before revisions were kept) is refused, not
    continued with KV and signatures that the loaded weights did not make."""
    from scenekv.vlm import load_backend

    world = load_backend("scenekv-world", device="cpu", dtype="fp32")
    assert world.revision and world.revision.startswith("run-")
    memory = RollingMemory.create(store, world, carriers="pool:4", config=SMALL, sid="w")
    memory.detach()
    RollingMemory.attach(store, world, "w").detach()  # its own revision: continued
    for stored in ("run-000000000000", ""):
        store.update_stream("w", {"revision": stored})
        with pytest.raises(UserError, match="other weights of scenekv-world") as err:
            RollingMemory.attach(store, world, "w")
        assert err.value.code == "model_mismatch"
