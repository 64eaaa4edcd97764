"""The encoder's scheduler: streams share vision batches, each stream's frames stay in order, no
stream waits more than a batch, one stream's bad frame never fails another's, other work (captions)
runs one step between batches; a batched vision pass gives a stream exactly the memory a lone append
gives; answers decode together in one forward a step and equal each answer decoded alone, frames
are encoded between their tokens, and a failed, cancelled or abandoned answer leaves the others."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest
import torch

from scenekv.memory import RollingConfig
from scenekv.workers.encoder_scheduler import EncoderScheduler
from scenekv.workers.scheduler_policy import SchedulerPolicy
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
    batcher = EncoderScheduler(rec, max_frames=8)
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
    batcher = EncoderScheduler(rec)
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

    batcher = EncoderScheduler(slow_first)
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

    batcher = EncoderScheduler(execute, background=between)
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
    batcher = EncoderScheduler(hub.append_batch, background=hub.caption_step)
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
    from scenekv.workers.blocking_service import BlockingService

    n = 4
    svc = BlockingService(model="tiny-random-llava-onevision", redis_url=redis_url, prefix=prefix, num_cpus=2)
    try:
        sids = [svc.start_stream(source="push", carriers="pool:4").stream_id for _ in range(n)]
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

    async def main():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(threads))
        try:
            sids = [(await svc.start_stream(source="push", carriers="pool:4")).stream_id for _ in range(n)]
            for t in range(4):
                image = np.full((384, 384, 3), 20 * t, np.uint8)
                await asyncio.gather(*(svc.push_frame(sid, float(t), image) for sid in sids))
            (stats,) = await svc.encoder_stats()
            h = stats["batch_streams"]
            widest = max(b for b, c in zip(h["buckets"], h["counts"], strict=False) if c)
            assert stats["frames_encoded"] == 4 * n
            assert widest > threads, h
            for sid in sids:  # every frame once, in order
                await svc.end_stream(sid)
                info = svc.store.info(sid)
                assert (info.last_pts, info.next_index) == (3.0, 4), (sid, info)
        finally:
            await svc.shutdown()

    asyncio.run(main())


# -- answers -----------------------------------------------------------------------------------
QUESTIONS = ["What happened at 00:02?", "Describe the scene.", "What colour is it?", "Anything new?"]


def _answers(sess, lengths=(6, 3, 8, 1)):
    from scenekv.vlm import SamplingParams

    chunks = [sess.export(0, 1), sess.export(0, 5), sess.export(2, 3), sess.export(4, 5)]
    return [
        sess.ask(q, chunks=[c], params=SamplingParams(max_new_tokens=n))
        for q, c, n in zip(QUESTIONS, chunks, lengths, strict=True)
    ]


def _model_scheduler(**kwargs):

    from scenekv.vlm.batch_decode import step_generations

    steps: list[list[tuple[int, int | None]]] = []  # each decode step: (generation, prompt budget)

    def recorded(gens, budgets):
        steps.append([(id(g), b) for g, b in zip(gens, budgets, strict=True)])
        return step_generations(tiny(), gens, budgets)

    def frames_ok(batch):
        return [{"sid": sid} for sid, _ in batch]

    return EncoderScheduler(frames_ok, step_generations=recorded, **kwargs), steps


def _read_all(scheduler, gens):
    """Read ``gens`` from a thread each, all queued before the scheduler's next step (it is held by
    a call meanwhile), as answers asked at once are: no thread start order decides the batches."""
    texts, errors = {}, {}
    entered, gate = threading.Event(), threading.Event()

    def hold():
        entered.set()
        gate.wait(30)

    def read(i, g):
        try:
            texts[i] = "".join(scheduler.generate(g))
        except Exception as exc:
            errors[i] = exc

    holder = threading.Thread(target=scheduler.call, args=(hold,))
    holder.start()
    assert entered.wait(30)
    before = scheduler.running
    threads = [threading.Thread(target=read, args=(i, g)) for i, g in enumerate(gens)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while scheduler.running < before + len(gens) and time.monotonic() < deadline:
        time.sleep(0.005)
    gate.set()
    for t in [holder, *threads]:
        t.join(60)
    return texts, errors


def _session():
    from scenekv.vlm import StreamSession

    sess = StreamSession(tiny(), "pool:16")
    sess.append(frames(6))
    return sess


def test_answers_asked_at_once_decode_together_and_equal_each_alone():
    sess = _session()
    alone = _answers(sess)
    expected = ["".join(g) for g in alone]
    scheduler, steps = _model_scheduler()
    try:
        gens = _answers(sess)
        texts, errors = _read_all(scheduler, gens)
        assert not errors
        assert [texts[i] for i in range(4)] == expected
        assert [g.token_ids for g in gens] == [g.token_ids for g in alone]
        assert max(len(s) for s in steps) == 4  # all four in one forward pass
        assert scheduler.decode_batch.count == len(steps)
        assert len(steps) < sum(len(g.token_ids) for g in alone)  # fewer passes than tokens
    finally:
        scheduler.close()


def test_long_prompts_are_chunked_so_running_answers_step_every_time():
    sess = _session()
    scheduler, steps = _model_scheduler(policy=SchedulerPolicy(prefill_tokens=4))
    try:
        first, *rest = _answers(sess, lengths=(30, 3, 3, 3))
        it = scheduler.generate(first)
        next(it)  # the first answer is decoding
        texts, errors = _read_all(scheduler, rest)
        assert not errors and len(texts) == 3
        for step in steps:
            assert sum(b for _, b in step if b is not None) <= 4  # prompt tokens a step, all answers
        assert all(any(g == id(first) for g, _ in s) for s in steps)  # it stepped every time
        # other prompts ran in chunks in the same steps as its tokens
        assert any((id(first), None) in s and any(b for g, b in s if g != id(first)) for s in steps)
        "".join(it)
        assert first.finish_reason == "length" and len(first.token_ids) == 30
    finally:
        scheduler.close()


def test_frames_are_encoded_between_an_answers_tokens():
    sess = _session()
    order: list[str] = []
    scheduler, _ = _model_scheduler()
    try:
        (gen,) = _answers(sess, lengths=(40, 1, 1, 1))[:1]
        it = scheduler.generate(gen)
        next(it)
        order.append("token")
        assert scheduler.submit("cam", [0]) == {"sid": "cam"}
        order.append("frames")
        rest = "".join(it)
        order.append("end")
        assert gen.finish_reason == "length" and len(gen.token_ids) == 40
        assert rest  # tokens came after the frames' batch, not all before it
        assert order == ["token", "frames", "end"]
    finally:
        scheduler.close()


def test_a_failing_or_abandoned_answer_leaves_the_others():
    from scenekv.vlm import Generation

    class Broken(Generation):
        def advance(self, n, logits):
            if self.token_ids:
                raise RuntimeError("broken on its second token")
            return super().advance(n, logits)

    sess = _session()
    alone = _answers(sess)
    for g in alone:
        list(g)
    scheduler, _ = _model_scheduler()
    try:
        gens = _answers(sess)
        g = gens[2]
        gens[2] = Broken(g.backend, g.cache, g.prompt, g.position, g.params)
        abandoned = _answers(sess, lengths=(60, 1, 1, 1))[0]
        it = scheduler.generate(abandoned)
        next(it)
        it.close()  # its reader went away mid-answer
        texts, errors = _read_all(scheduler, gens)
        assert "broken" in str(errors[2])
        assert {i: gens[i].token_ids for i in (0, 1, 3)} == {i: alone[i].token_ids for i in (0, 1, 3)}
        for _ in range(200):
            if scheduler.running == 0:
                break
            threading.Event().wait(0.01)
        assert scheduler.running == 0
        assert abandoned.finish_reason == "cancelled" and len(abandoned.token_ids) < 60
    finally:
        scheduler.close()


@contextlib.contextmanager
def _frames_pending(scheduler, streams: str):
    """Frames of each stream always waiting: two pushers a stream, so while one's frame is in a
    vision batch the other's waits (no step is without frames by a thread's timing). The scheduler
    is closed on the way out."""
    stop = threading.Event()

    def push(sid):
        while not stop.is_set():
            try:
                scheduler.submit(sid, [0])
            except RuntimeError:  # closed at the end
                return

    pushers = [threading.Thread(target=push, args=(sid,)) for sid in streams for _ in range(2)]
    for t in pushers:
        t.start()
    try:
        yield
    finally:
        stop.set()
        scheduler.close()
        for t in pushers:
            t.join(5)


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_answers_and_vision_batches_share_the_models_time(share):
    """Two streams keep frames waiting, and each vision batch takes 0.1 s (seconds, on a CPU):
    with a decode share of 0.5 an answer gets many tokens between two vision batches and ingest
    still goes on; with 0 (a vision batch every step) it gets one token per batch."""
    import time
    from functools import partial

    from scenekv.vlm.batch_decode import step_generations

    batches: list[float] = []

    def slow_vision(batch):
        time.sleep(0.1)
        batches.append(time.perf_counter())
        return [{"sid": sid} for sid, _ in batch]

    sess = _session()
    scheduler = EncoderScheduler(
        slow_vision,
        step_generations=partial(step_generations, tiny()),
        policy=SchedulerPolicy(decode_share=share),
    )
    with _frames_pending(scheduler, "ab"):
        time.sleep(0.25)
        (gen,) = _answers(sess, lengths=(30, 1, 1, 1))[:1]
        t0 = time.perf_counter()
        "".join(scheduler.generate(gen))
        t1 = time.perf_counter()
        assert len(gen.token_ids) == 30
        during = [b for b in batches if t0 <= b <= t1]
        if share == 0.0:
            assert len(during) >= 25  # a vision batch in (almost) every step
        else:
            assert 1 <= len(during) <= 10, len(during)  # many tokens a batch, ingest not stopped


def test_while_answers_run_a_vision_batch_holds_what_fits_in_busy_vision_s():
    """Frames cost 0.05 s each: alone, the four streams' pending frames share batches; while an
    answer runs, a batch holds what fits in 0.07 s (one frame), so a question waits for one
    frame's encode, not four."""
    import time
    from functools import partial

    from scenekv.vlm.batch_decode import step_generations

    sizes: list[tuple[int, bool]] = []

    def vision(batch):
        busy = scheduler.running > 0  # whether the answer was running when this batch was planned
        time.sleep(0.05 * sum(len(f) for _, f in batch))
        sizes.append((sum(len(f) for _, f in batch), busy))
        return [{"sid": sid} for sid, _ in batch]

    sess = _session()
    scheduler = EncoderScheduler(
        vision,
        step_generations=partial(step_generations, tiny()),
        policy=SchedulerPolicy(busy_vision_s=0.07),
    )
    with _frames_pending(scheduler, "abcd"):
        time.sleep(2.0)
        (gen,) = _answers(sess, lengths=(300, 1, 1, 1))[:1]
        "".join(scheduler.generate(gen))
        alone = [n for n, busy in sizes if not busy]
        during = [n for n, busy in sizes if busy]
        assert max(alone) >= 2  # alone, the pending streams' frames share batches
        assert during and set(during) == {1}, (sizes, len(gen.token_ids))


def test_a_question_asked_while_frames_wait_gets_its_first_token_before_the_next_vision_batch():
    """Two streams keep frames waiting and a vision batch takes 0.3 s; no answer runs. A question
    is planned through ``plan`` (as the encoder actor does) and its reader is slow to come back
    (a busy actor thread): the generation joined the batch with its planning, so its first
    decode step comes right after the vision batch in progress when it was asked, with no
    further batch between."""
    import time

    from scenekv.vlm.batch_decode import step_generations

    batches: list[float] = []
    first_step: dict[int, float] = {}

    def slow_vision(batch):
        time.sleep(0.3)
        batches.append(time.perf_counter())
        return [{"sid": sid} for sid, _ in batch]

    def recorded(gens, budgets):
        for g in gens:
            first_step.setdefault(id(g), time.perf_counter())
        return step_generations(tiny(), gens, budgets)

    sess = _session()
    scheduler = EncoderScheduler(slow_vision, step_generations=recorded)
    with _frames_pending(scheduler, "ab"):
        time.sleep(1.0)
        for _ in range(3):  # three questions, one after another, each between vision batches
            (gen,) = _answers(sess, lengths=(4, 1, 1, 1))[:1]
            t0 = time.perf_counter()
            _, deltas = scheduler.plan(lambda gen=gen: (None, gen))  # its planning, as the actor's
            time.sleep(0.1)  # the reader comes back late: the generation does not wait for it
            "".join(deltas)
            between = [b for b in batches if t0 < b < first_step[id(gen)]]
            assert len(between) <= 1, (between, first_step[id(gen)] - t0)
            time.sleep(0.5)  # frames go on meanwhile
        assert len(batches) >= 8  # ingest was not stopped


# -- background work in the batch ---------------------------------------------------------------
def _closed_scene_hub(store) -> tuple[StreamHub, str]:
    """A hub whose stream has closed its first scene: that scene's caption is due, not made yet."""
    from scenekv.ingest import open_source
    from scenekv.world.cut_video import make_video

    path = make_video(store_tmp() / "cut.mp4", duration=12, fps=2, size=(96, 72), cuts=(5.5,))
    with open_source(path, fps=1.0) as src:
        video = [(f.pts, f.image) for f in src]
    hub = StreamHub(tiny(), store, rolling=RollingConfig(window=12, chunk_frames=4), caption_tokens=8)
    sid = hub.open(carriers="pool:4")["stream_id"]
    hub.append(sid, video)
    assert hub.captions_due.pending(sid) == 1
    return hub, sid


def test_a_caption_decodes_in_an_answers_packed_steps_and_is_the_caption_made_alone(store):
    """A scene's caption and an answer decode in the same forward passes (a step holds a token of
    each), and the stored caption is the one made alone (greedy, token by token)."""
    import time

    from scenekv.vlm.batch_decode import step_generations

    alone, alone_sid = _closed_scene_hub(store)
    job = alone.captions_due.jobs[(alone_sid, 0)]
    by_itself = alone._caption_answer(alone_sid, job.start, job.end)
    list(by_itself)  # the caption decoded alone, as the queue's steps did it before
    expected = by_itself.text.strip()
    while alone.caption_step() is not None:  # the queue's own steps, with no scheduler
        pass
    assert expected and store.scenes(alone_sid)[0].caption == expected

    hub, sid = _closed_scene_hub(store)
    sess = _session()
    (answer,) = _answers(sess, lengths=(40, 1, 1, 1))[:1]
    reference = "".join(_answers(sess, lengths=(40, 1, 1, 1))[0])
    entered, gate = threading.Event(), threading.Event()
    steps: list[set[int]] = []

    def held_frames(batch):  # the first vision batch holds the loop until the answer waits
        entered.set()
        gate.wait(10)
        return [{"sid": s} for s, _ in batch]

    def recorded(gens, budgets):
        steps.append({id(g) for g in gens})
        return step_generations(tiny(), gens, budgets)

    scheduler = EncoderScheduler(held_frames, step_generations=recorded, background=hub.background_step)
    captions: list = []

    def adopt(generation):
        captions.append(generation)
        return scheduler.adopt(generation)

    hub.decode_with(adopt)
    texts: list[str] = []
    try:
        pusher = threading.Thread(target=scheduler.submit, args=("cam", [0]))
        pusher.start()  # after its batch the background work (the due caption) is looked for
        assert entered.wait(10)
        reader = threading.Thread(target=lambda: texts.append("".join(scheduler.generate(answer))))
        reader.start()
        for _ in range(500):
            if scheduler.running:
                break
            time.sleep(0.01)
        gate.set()
        pusher.join(10)
        reader.join(60)
        deadline = time.monotonic() + 30
        while not store.scenes(sid)[0].caption and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.close()
        hub.close()
        alone.close()
    assert len(captions) == 1, captions  # the caption's generation was handed to the scheduler
    caption = captions[0]
    assert {id(answer), id(caption)} in steps, steps  # one forward held a step of each
    assert scheduler.decode_batch.as_dict()["counts"][1] > 0  # steps of two generations
    assert caption.finish_reason in ("stop", "length") and scheduler.background_running == 0
    assert store.scenes(sid)[0].caption == expected  # what the caption made alone says
    assert texts == [reference] and len(answer.token_ids) == 40


def test_a_when_answers_reads_decode_together_and_read_what_each_reads_alone():
    """A `when` answer's reads on the scheduler: one packed forward holds all of them, and each
    reads what it reads alone (the same scan, the same answer)."""
    from scenekv.qa.context import ContextPlan
    from scenekv.qa.scene_check import SceneScan, SceneSpan
    from scenekv.vlm import Answerer

    sess = _session()
    answerer = Answerer(tiny())
    ids = answerer.question_ids("Is there a red circle?")
    frames = [[sess.export(i, i) for i in range(3)], [sess.export(i, i) for i in range(3, 6)]]
    spans = [SceneSpan(0.0, 3.0, ()), SceneSpan(3.0, 6.0, (), open=True)]

    def scan() -> SceneScan:
        return SceneScan(
            spans,
            frames,
            "When did the red circle appear?",
            lambda f: answerer.read(ids, f),
            plan=ContextPlan([]),
            lock=threading.Lock(),
            reading=lambda f: answerer.reading(ids, f),
        )

    alone = scan()
    list(alone)
    scheduler, steps = _model_scheduler()
    try:
        batched = scan()
        deltas = list(batched.scheduled(scheduler.call, scheduler.complete))
    finally:
        scheduler.close()
    assert batched.readings == alone.readings and len(alone.readings[0]) == 3
    assert deltas == [""] * 6 + [alone.text] and batched.finish_reason == "stop"
    assert max(len(s) for s in steps) == 6  # the six reads in one forward
