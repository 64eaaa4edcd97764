"""The live pipeline in one process: frames in, scenes closed and captioned (as scheduled work, not
inside the append), questions answered."""

from __future__ import annotations

import pytest

from scenekv.ingest import open_source
from scenekv.memory import RollingConfig, StreamNotFound
from scenekv.vlm import SamplingParams
from scenekv.workers.stream_hub import StreamHub
from scenekv.world.cut_video import make_video

from support.tiny_model import tiny

CUTS = (10.5, 21.5)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = make_video(
        tmp_path_factory.mktemp("hub") / "v.mp4", duration=32, fps=2, size=(160, 120), cuts=CUTS
    )
    with open_source(path, fps=1.0) as src:
        return [(f.pts, f.image) for f in src]


def test_scenes_close_with_captions_and_questions_cite_them(store, video):
    hub = StreamHub(tiny(), store, rolling=RollingConfig(window=12, chunk_frames=4), caption_tokens=6)
    opened = hub.open(source="v.mp4", carriers="pool:4")
    sid = opened["stream_id"]
    assert opened["random_weights"] is True and opened["carriers"] == "pool:4"
    closed = []
    for i in range(0, len(video), 6):
        closed += hub.append(sid, video[i : i + 6])["closed"]
    # the appends that closed a scene did not caption it: it is due, made step by step later
    assert len(closed) == 2 and all(c["caption"] is None and c["caption_pending"] for c in closed)
    assert not any(s.caption for s in store.scenes(sid))
    assert hub.captions_due.pending(sid) == 2
    steps = 0
    while hub.caption_step() is not None:  # what the encoder's scheduler runs between batches
        steps += 1
    assert steps > 2 * 2  # each caption in several small steps (its tokens, then the store write)
    assert [bool(s.caption) for s in store.scenes(sid)] == [True, True, False]  # the open one waits
    last = hub.end(sid)
    assert len(last) == 1 and last[0]["caption"] and last[0]["caption_pending"] is False
    starts = [c["start"] for c in closed + last]
    assert starts[0] == 0.0
    assert [abs(s - c) <= 1.0 for s, c in zip(starts[1:], CUTS, strict=True)] == [True, True]
    stored = store.scenes(sid)
    assert stored[-1].caption == last[0]["caption"]
    assert all(isinstance(s.caption, str) and s.caption for s in stored)
    events = [t for _, t, _ in store.events(sid)]
    assert events.count("scene.captioned") == 3 and events.count("scene.closed") == 3
    # after the stream ended it is still answerable from Redis alone
    answer = hub.ask(sid, "what happened at 0:15?", params=SamplingParams(max_new_tokens=3))
    list(answer)
    assert any(e["start"] <= 15 <= e["end"] for e in answer.evidence)
    with pytest.raises(StreamNotFound):
        hub.append(sid, video[:1])
    with pytest.raises(StreamNotFound):
        hub.ask("nope", "anything?")


def test_a_detached_stream_continues_after_reopen(store, video):
    config = RollingConfig(window=12, chunk_frames=4)
    first = StreamHub(tiny(), store, rolling=config, captions=False)
    sid = first.open(carriers="pool:4")["stream_id"]
    first.append(sid, video[:10])
    first.close()  # a graceful restart
    second = StreamHub(tiny(), store, rolling=config, captions=False)
    again = second.open(sid=sid, carriers="pool:4")
    assert again["last_pts"] == video[9][0]
    out = second.append(sid, video[10:14])
    assert out["frames"] == 4 and out["last_pts"] == video[13][0]
    second.close()


def test_a_stored_stream_of_another_model_is_refused_not_answered(store, video):
    from scenekv.errors import UserError
    from scenekv.vlm import load_backend

    hub = StreamHub(tiny(), store, rolling=RollingConfig(window=12, chunk_frames=4), captions=False)
    sid = hub.open(carriers="pool:4")["stream_id"]
    hub.append(sid, video[:6])
    hub.end(sid)
    other = StreamHub(load_backend("tiny-random-qwen2.5-vl"), store, captions=False)
    with pytest.raises(UserError, match="recorded with model tiny-random-llava-onevision") as err:
        other.ask(sid, "what happened at 0:03?")
    assert err.value.code == "model_mismatch"
    list(hub.ask(sid, "what happened at 0:03?", params=SamplingParams(max_new_tokens=2)))  # its own model


def test_questions_from_two_threads_share_forward_passes_on_the_scheduler(store, video):
    """The engine is shared by every stream's questions; read from two threads through the
    encoder's scheduler, the two answers run in the same forward passes (never two forwards at
    once) and each answer is what it would be alone."""
    import threading
    from functools import partial

    from scenekv.vlm.batch_decode import step_generations
    from scenekv.workers.encoder_scheduler import EncoderScheduler

    hub = StreamHub(tiny(), store, rolling=RollingConfig(window=12, chunk_frames=4), captions=False)
    sid = hub.open(carriers="pool:4")["stream_id"]
    hub.append(sid, video[:12])
    params = SamplingParams(max_new_tokens=24)
    questions = ["what happened at 0:02?", "what happened at 0:09?"]
    alone = ["".join(hub.ask(sid, q, params=params)) for q in questions]

    backend = hub.backend
    forward, inside, overlaps = backend.forward_hidden, [0], [0]
    guard = threading.Lock()

    def counted(*args, **kwargs):
        with guard:
            inside[0] += 1
            overlaps[0] += inside[0] > 1
        try:
            return forward(*args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1

    backend.forward_hidden = counted
    scheduler = EncoderScheduler(hub.append_batch, step_generations=partial(step_generations, backend))
    try:
        answers = [scheduler.call(lambda q=q: hub.ask(sid, q, params=params)) for q in questions]
        texts = [""] * 2

        def read(i: int) -> None:
            texts[i] = "".join(answers[i].follow(scheduler.generate(answers[i].generation)))

        threads = [threading.Thread(target=read, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        scheduler.close()
        del backend.forward_hidden
    assert overlaps[0] == 0
    assert texts == alone
    assert scheduler.decode_batch.as_dict()["counts"][1] > 0  # steps that decoded both answers
    hub.end(sid)


def test_a_live_view_taken_during_appends_misses_no_frame(store, video):
    """A question's view of a live stream (stored chunks + device window) is taken while another
    thread appends and evicts: every frame up to the view's newest is in it exactly once."""
    import threading

    from scenekv.qa.memory_view import MemoryView

    hub = StreamHub(tiny(), store, rolling=RollingConfig(window=8, chunk_frames=2), captions=False)
    sid = hub.open(carriers="pool:4")["stream_id"]
    mem = hub.streams[sid]
    done = threading.Event()

    frames = [(pts + lap * 40.0, img) for lap in range(3) for pts, img in video]  # ~100 s of frames

    def feed():
        for frame in frames:
            hub.append(sid, [frame])
        done.set()

    threading.Thread(target=feed).start()
    views = 0
    while not done.is_set():
        view = MemoryView.of(mem)
        frames = [i for m in view._index for i in range(m.first_frame, m.last_frame + 1)]
        frames += [f.index for c in view.live.values() for f in c.frames]
        if frames:
            assert sorted(frames) == list(range(max(frames) + 1)), sorted(frames)
            views += 1
    assert views >= 3  # views really were taken while frames were being appended and evicted
    hub.end(sid)


def test_a_failed_caption_never_fails_its_frames_and_is_retried(redis_url, prefix, video):
    """The store refuses the first two caption writes (as Redis does under OOM or a failover):
    the appends that closed the scene still succeed, and the caption lands on a later try."""
    import time

    import redis

    from scenekv.memory import MemoryStore

    class FlakyCaptions(MemoryStore):
        refusals = 2

        def set_caption(self, sid, index, caption):
            if FlakyCaptions.refusals:
                FlakyCaptions.refusals -= 1
                raise redis.ConnectionError("Connection reset by peer")
            super().set_caption(sid, index, caption)

    store = FlakyCaptions(redis_url, prefix)
    hub = StreamHub(tiny(), store, rolling=RollingConfig(window=12, chunk_frames=4), caption_tokens=4)
    sid = hub.open(source="v.mp4", carriers="pool:4")["stream_id"]
    results = [hub.append(sid, video[i : i + 6]) for i in range(0, len(video), 6)]
    assert sum(r["frames"] for r in results) == len(video)  # every frame went in
    while (wait := hub.caption_step()) is not None:
        time.sleep(wait)
    assert FlakyCaptions.refusals == 0 and hub.captions_due.counts.retried == 2
    assert [bool(s.caption) for s in store.scenes(sid)] == [True, True, False]  # retried, then stored
    hub.end(sid)
    assert all(s.caption for s in store.scenes(sid)), [s.caption for s in store.scenes(sid)]


def test_a_caption_that_keeps_failing_is_given_up_after_its_tries(redis_url, prefix, video):
    import redis

    from scenekv.memory import MemoryStore
    from scenekv.workers.caption_jobs import CAPTION_TRIES

    attempts: dict[int, int] = {}

    class NoCaptions(MemoryStore):
        def set_caption(self, sid, index, caption):
            attempts[index] = attempts.get(index, 0) + 1
            raise redis.ConnectionError("Connection reset by peer")

    store = NoCaptions(redis_url, prefix)
    hub = StreamHub(tiny(), store, rolling=RollingConfig(window=12, chunk_frames=4), caption_tokens=2)
    sid = hub.open(source="v.mp4", carriers="pool:4")["stream_id"]
    for i in range(0, len(video), 4):
        assert hub.append(sid, video[i : i + 4])["frames"]
    last = hub.end(sid)  # waits for every caption's last try, then ends the stream all the same
    assert attempts == {0: CAPTION_TRIES, 1: CAPTION_TRIES, 2: CAPTION_TRIES}, attempts
    assert last[0]["caption"] is None and last[0]["caption_pending"] is False  # left out, not coming
    assert hub.captions_due.counts.given_up == 3 and not hub.captions_due.jobs
    assert store.info(sid).status == "ended"
