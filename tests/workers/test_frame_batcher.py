"""The frame batcher: streams share vision batches, each stream's frames stay in order, no stream
waits more than a batch, one stream's bad frame never fails another's, other work (captions) runs
one step between batches; and a batched vision pass gives a stream exactly the memory a lone append
gives."""

from __future__ import annotations

import threading

import numpy as np
import torch

from scenekv.memory import RollingConfig
from scenekv.workers.frame_batcher import FrameBatcher
from scenekv.workers.stream_hub import StreamHub

from support.tiny_model import frames, tiny


class Recorder:
    """An executor that records each batch and holds the first one until released, so requests
    pile up behind it as they do behind a running vision forward."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.release = threading.Event()

    def __call__(self, batch):
        if not self.batches:
            self.release.wait(5)
        self.batches.append([(sid, len(f)) for sid, f in batch])
        return [ValueError(f"bad frame in {sid}") if sid == "bad" else {"sid": sid} for sid, _ in batch]


def _submit_all(batcher, requests):
    out = {}

    def go(key, sid, n):
        try:
            out[key] = batcher.submit(sid, [0] * n)
        except Exception as exc:
            out[key] = exc

    threads = []
    for key, (sid, n) in enumerate(requests):
        threads.append(threading.Thread(target=go, args=(key, sid, n)))
        threads[-1].start()
        threading.Event().wait(0.02)  # arrival order is submission order
    return threads, out


def test_pending_streams_share_a_batch_in_arrival_order_one_request_each():
    rec = Recorder()
    batcher = FrameBatcher(rec, max_frames=8)
    try:
        threads, out = _submit_all(
            batcher, [("a", 1), ("b", 2), ("a", 1), ("c", 3), ("d", 4), ("e", 1), ("b", 1)]
        )
        rec.release.set()
        for t in threads:
            t.join(5)
        first, *rest = rec.batches
        assert first == [("a", 1)]  # it ran alone: nothing else was pending yet
        # then everything pending that fits in 8 frames, in arrival order (a's second request runs
        # after its first: batches run one after another); d (4 more frames would pass 8) leads the next
        # b's second request waits for a batch without b's first: one request per stream per batch
        assert rest[0] == [("b", 2), ("a", 1), ("c", 3), ("e", 1)]
        assert rest[1] == [("d", 4), ("b", 1)]
        assert all(out[k] == {"sid": sid} for k, sid in enumerate("abacdeb"))
        assert batcher.batch_streams.count == 3 and batcher.batch_streams.sum == 7
    finally:
        batcher.close()


def test_one_streams_error_is_its_own():
    rec = Recorder()
    rec.release.set()
    batcher = FrameBatcher(rec)
    try:
        threads, out = _submit_all(batcher, [("ok", 1), ("bad", 1)])
        for t in threads:
            t.join(5)
        assert out[0] == {"sid": "ok"} and isinstance(out[1], ValueError)
    finally:
        batcher.close()


def test_a_batch_that_fails_as_a_whole_is_run_request_by_request():
    calls = []

    def execute(batch):
        calls.append([sid for sid, _ in batch])
        if len(batch) > 1:
            raise RuntimeError("cannot decode one of the images")
        return [{"sid": batch[0][0]}]

    gate = threading.Event()
    first = [True]

    def slow_first(batch):
        if first[0]:
            first[0] = False
            gate.wait(5)
        return execute(batch)

    batcher = FrameBatcher(slow_first)
    try:
        threads, out = _submit_all(batcher, [("x", 1), ("y", 1), ("z", 1)])
        gate.set()
        for t in threads:
            t.join(5)
        assert out == {0: {"sid": "x"}, 1: {"sid": "y"}, 2: {"sid": "z"}}
        assert calls[1] == ["y", "z"] and calls[2:] == [["y"], ["z"]]
    finally:
        batcher.close()


def test_background_work_runs_one_step_between_batches_and_never_delays_frames_more():
    """Frames that arrive while background work (a caption's tokens) is running go in the next
    batch, after at most the one step in progress; the background work resumes after them."""
    order: list = []
    batcher = None
    left = [5]
    submitted = threading.Event()

    def execute(batch):
        order.append(("batch", [sid for sid, _ in batch]))
        return [{"sid": sid} for sid, _ in batch]

    def between():
        if not left[0]:
            return None
        left[0] -= 1
        order.append("step")
        if left[0] == 3:  # frames arrive during the second step
            threading.Thread(target=batcher.submit, args=("late", [0])).start()
            for _ in range(500):
                if batcher.depth:
                    break
                threading.Event().wait(0.01)
            submitted.set()
        return 0.0

    batcher = FrameBatcher(execute, between=between)
    try:
        assert batcher.submit("first", [0]) == {"sid": "first"}
        for _ in range(500):
            if not left[0] and len(order) == 7:
                break
            threading.Event().wait(0.01)
        assert submitted.is_set()
        assert order == [
            ("batch", ["first"]),
            "step",
            "step",
            ("batch", ["late"]),  # the late frames went before the third step
            "step",
            "step",
            "step",
        ], order
    finally:
        batcher.close()


def test_the_scheduler_captions_closed_scenes_between_batches(store):
    """Through the real hub: the append that closes a scene returns at once with its caption
    pending; the scheduler makes and stores the caption afterwards with no further call."""
    import time

    from scenekv.ingest import open_source
    from scenekv.world.cut_video import make_video

    path = make_video(store_tmp() / "cut.mp4", duration=12, fps=2, size=(96, 72), cuts=(5.5,))
    with open_source(path, fps=1.0) as src:
        video = [(f.pts, f.image) for f in src]
    hub = StreamHub(tiny(), store, rolling=RollingConfig(window=12, chunk_frames=4), caption_tokens=8)
    batcher = FrameBatcher(hub.append_batch, between=hub.caption_step)
    try:
        sid = hub.open(carriers="pool:4")["stream_id"]
        closed = [c for i in range(0, len(video), 3) for c in batcher.submit(sid, video[i : i + 3])["closed"]]
        assert [(c["scene_id"], c["caption"], c["caption_pending"]) for c in closed] == [(0, None, True)]
        deadline = time.monotonic() + 30
        while not store.scenes(sid)[0].caption and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.scenes(sid)[0].caption  # made by the scheduler, not by a call of ours
        assert "scene.captioned" in [t for _, t, _ in store.events(sid)]
    finally:
        batcher.close()
        hub.close()


def store_tmp():
    import pathlib
    import tempfile

    return pathlib.Path(tempfile.mkdtemp(prefix="scenekv-batcher-"))


def test_streams_batched_together_get_the_memory_of_lone_appends(store):
    """Two streams through one vision forward equal the same streams appended alone, bit for bit
    up to float noise: a stream's memory does not depend on who it shared a batch with."""
    config = RollingConfig(window=12, chunk_frames=4)
    rng = np.random.default_rng(0)
    clips = {
        k: [(float(t), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)) for t in range(5)] for k in "ab"
    }
    alone = StreamHub(tiny(), store, rolling=config, captions=False)
    together = StreamHub(tiny(), store, rolling=config, captions=False)
    ids = {}
    for name, hub in (("alone", alone), ("together", together)):
        ids[name] = {k: hub.open(carriers="pool:4")["stream_id"] for k in "ab"}
    for k in "ab":
        alone.append(ids["alone"][k], clips[k])
    results = together.append_batch([(ids["together"][k], clips[k]) for k in "ab"])
    assert [r["frames"] for r in results] == [5, 5]
    for k in "ab":
        a = alone.streams[ids["alone"][k]].session.export(0, 4)
        b = together.streams[ids["together"][k]].session.export(0, 4)
        torch.testing.assert_close(a.keys, b.keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.values, b.values, atol=1e-5, rtol=1e-5)
    # a stream that is not open fails alone
    (missing,) = together.append_batch([("nope", frames(1))])
    assert "not open" in str(missing)
    for hub in (alone, together):
        hub.close()


def test_four_push_clients_at_once_share_vision_batches(redis_url, prefix):
    """Four streams pushed at the same time through the real service (Ray encoder actor): the
    encoder's figures show vision batches holding frames of more than one stream."""
    from scenekv.workers.service import SceneKVService

    n = 4
    svc = SceneKVService(model="tiny-random-llava-onevision", redis_url=redis_url, prefix=prefix, num_cpus=2)
    try:
        sids = [svc.start_stream(source="push", carriers="pool:4")["stream_id"] for _ in range(n)]
        errors = []

        def push(sid):
            try:
                for t in range(12):
                    svc.push_frame(sid, float(t), np.full((64, 64, 3), 10 * t, np.uint8))
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=push, args=(sid,)) for sid in sids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        (stats,) = svc.encoder_stats()
        h = stats["batch_streams"]
        shared = sum(c for bound, c in zip([*h["buckets"], None], h["counts"], strict=True) if bound != 1)
        assert stats["frames_encoded"] == 12 * n
        assert shared >= 1, h  # some batch held frames of two or more streams
    finally:
        svc.shutdown()


def test_awaited_pushes_share_batches_beyond_the_loops_threads(redis_url, prefix):
    """The gateway's push path awaits the append: with 2 threads for the event loop's blocking
    hops, 12 streams' frames are still in flight at once and share vision batches of more than 2
    streams (a push that held a thread for its whole append could not exceed 2)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from scenekv.workers.service import SceneKVService

    n, threads = 12, 2
    svc = SceneKVService(model="tiny-random-llava-onevision", redis_url=redis_url, prefix=prefix, num_cpus=2)
    try:
        sids = [svc.start_stream(source="push", carriers="pool:4")["stream_id"] for _ in range(n)]

        async def main():
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(threads))
            for t in range(4):
                image = np.full((384, 384, 3), 20 * t, np.uint8)
                await asyncio.gather(*(svc.push_frame_async(sid, float(t), image) for sid in sids))

        asyncio.run(main())
        (stats,) = svc.encoder_stats()
        h = stats["batch_streams"]
        widest = max(b for b, c in zip(h["buckets"], h["counts"], strict=False) if c)
        assert stats["frames_encoded"] == 4 * n
        assert widest > threads, h
        for sid in sids:  # every frame once, in order
            svc.end_stream(sid)
            info = svc.store.info(sid)
            assert (info.last_pts, info.next_index) == (3.0, 4), (sid, info)
    finally:
        svc.shutdown()
