"""The pipeline on Ray actors: file in, scenes captioned, questions answered, an encoder crash survived."""

from __future__ import annotations

import time

import pytest
import ray
import torch

from scenekv.workers.errors import EncoderUnavailable
from scenekv.workers.results import AnswerDelta, AnswerDone, AnswerError
from scenekv.workers.service import SceneKVService, UnknownStream
from scenekv.world.cut_video import make_video

from support.ws_helpers import local_service

CUTS = (10.5, 21.5)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return str(
        make_video(tmp_path_factory.mktemp("w") / "v.mp4", duration=32, fps=2, size=(160, 120), cuts=CUTS)
    )


@pytest.fixture(scope="module")
def service():
    with local_service("service") as svc:
        yield svc


def _decoded(service, sid, timeout):
    """The stream's progress once its DecoderActor read the whole file, polled as the gateway does."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"{sid} not decoded in {timeout} s"
        try:
            progress = service.progress(sid)
        except EncoderUnavailable:  # Ray restarts a killed encoder
            progress = None
        if progress is not None and progress.status not in ("idle", "running"):
            assert progress.status == "done", progress
            return progress
        time.sleep(0.2)


def _check_scenes(service, sid):
    scenes = service.scenes(sid)
    assert len(scenes) == 3
    for start, cut in zip([s.start for s in scenes[1:]], CUTS, strict=True):
        assert abs(start - cut) <= 1.0
    assert all(s.closed and s.caption for s in scenes)


def test_a_file_is_ingested_captioned_and_answered(service, video):
    info = service.start_stream(video, fps=1.0, carriers="pool:4")
    sid = info.stream_id
    assert info.random_weights is True
    assert _decoded(service, sid, timeout=120).frames == 32
    service.end_stream(sid)
    _check_scenes(service, sid)
    items = list(service.ask(sid, "what happened at 0:15?", max_tokens=5))
    assert all(isinstance(i, AnswerDelta) for i in items[:-1])
    done = items[-1]
    assert isinstance(done, AnswerDone) and done.text == "".join(i.text for i in items[:-1])
    assert any(e["start"] <= 15 <= e["end"] for e in done.evidence)
    future = list(service.ask(sid, "what happens at 9:00?"))
    assert future == [AnswerError("anchor_in_future", future[0].message)]
    with pytest.raises(UnknownStream):
        list(service.ask("nope", "hello?"))


def test_a_killed_encoder_restarts_and_the_file_completes(service, video):
    info = service.start_stream(video, fps=1.0, carriers="pool:4")
    sid = info.stream_id
    deadline = time.monotonic() + 60
    while service.progress(sid).frames < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    ray.kill(service.encoder, no_restart=False)  # a crash: Ray restarts it, the stream resumes from Redis
    assert (_decoded(service, sid, timeout=180).restarts or 0) >= 1
    service.end_stream(sid)
    _check_scenes(service, sid)
    assert service.store.info(sid).last_pts == 31.0


def test_caption_command_writes_parseable_cues_at_the_cuts_and_reuses_memory(video, own_redis, tmp_path):
    """`scenekv caption` end to end in its own process (own Ray, a private Redis); a re-run reuses it."""
    import os
    import subprocess
    import sys

    import webvtt

    cmd = [
        sys.executable,
        "-m",
        "scenekv.cli",
        "caption",
        video,
        "--format",
        "vtt",
        "--out",
        str(tmp_path),
        "--model",
        "tiny-random-llava-onevision",
        "--redis-url",
        own_redis.url,
    ]
    env = {**os.environ, "RAY_ADDRESS": ""}
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "v.vtt"
    assert first.stdout.strip() == str(path)
    cues = list(webvtt.read(str(path)))
    assert len(cues) == 3
    starts = [c.start_in_seconds for c in cues]
    assert starts[0] == 0 and all(abs(s - c) <= 1.0 for s, c in zip(starts[1:], CUTS, strict=True))
    assert all(c.text for c in cues)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert again.returncode == 0 and "reusing memory" in again.stderr
    assert [c.text for c in webvtt.read(str(path))] == [c.text for c in cues]


def test_a_file_split_into_ranges_decoded_in_parallel_matches_one_pass(service, video):
    """Three RangeDecoders seek to their ranges; the encoder still sees every frame once, in order,
    so scenes and captions are those of a single pass."""
    info = service.start_stream(video, fps=1.0, carriers="pool:4", decode=False)
    sid = info.stream_id
    seen = []
    frames = service.ingest_ranges(video, sid, duration=32.0, fps=1.0, parts=3, on_batch=seen.append)
    assert frames == 32 and seen == sorted(seen) and seen[-1] == 31.0
    service.end_stream(sid)
    _check_scenes(service, sid)
    assert service.store.info(sid).last_pts == 31.0

    one = service.start_stream(video, fps=1.0, carriers="pool:4").stream_id  # one DecoderActor pass
    _decoded(service, one, timeout=180)
    service.end_stream(one)

    def layout(s):  # chunks (frames, pts, positions, scene) and scene bounds
        metas = sorted(service.store.chunk_index(s), key=lambda m: m.first_frame)
        chunks = [
            (m.first_frame, m.last_frame, m.first_pts, m.last_pts, m.position, m.span, m.scene) for m in metas
        ]
        scenes = [(x.scene_id, x.start, x.end, x.closed) for x in service.scenes(s)]
        return chunks, scenes, [m.cid for m in metas]

    (chunks, scenes, cids), (chunks1, scenes1, cids1) = layout(sid), layout(one)
    assert chunks == chunks1 and scenes == scenes1
    # the same KV, to float rounding: frames reach the vision tower in other batches (captions are
    # not compared: a random-weight model's greedy tokens flip on differences of that size)
    for a, b in zip(service.store.load_chunks(sid, cids), service.store.load_chunks(one, cids1), strict=True):
        torch.testing.assert_close(a.keys, b.keys, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a.values, b.values, atol=1e-4, rtol=1e-4)


def test_end_after_the_encoder_died_closes_the_last_scene_and_keeps_every_frame(service, video):
    """A push stream, then SIGKILL of the encoder, then end with no frame in between: the new
    encoder re-opens the stream, gets the frames only the dead one had, and closes its last scene."""
    import os
    import signal

    from scenekv.ingest import open_source

    with open_source(video, fps=1.0) as src:
        frames = [(f.pts, f.image) for f in src][:14]  # a cut at 10.5 s: scene 1 stays open
    sid = service.start_stream("push", fps=1.0, carriers="pool:4").stream_id
    for pts, image in frames:
        service.push_frame(sid, pts, image)
    os.kill(ray.get(service.encoder.pid.remote()), signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:
        try:
            closed = service.end_stream(sid)
            break
        except Exception as exc:  # EncoderUnavailable while it restarts
            assert type(exc).__name__ == "EncoderUnavailable" and time.monotonic() < deadline, exc
            time.sleep(0.5)
    assert [c.scene_id for c in closed][-1] == 1 and all(c.caption for c in closed)
    scenes = service.scenes(sid)
    assert len(scenes) == 2 and all(s.closed for s in scenes)
    assert all(s.caption for s in scenes), scenes  # none lost with the dead encoder's queue
    info = service.store.info(sid)
    assert info.last_pts == frames[-1][0] and info.next_index == len(frames)


def test_zero_encoders_is_refused_before_ray_or_redis_start(redis_url):
    from scenekv.errors import UserError

    before = ray.is_initialized()
    with pytest.raises(UserError, match="--encoders must be at least 1, got 0"):
        SceneKVService(model="tiny-random-llava-onevision", redis_url=redis_url, encoders=0)
    assert ray.is_initialized() == before


def test_a_question_first_after_the_encoder_died_sees_the_frames_only_it_had(service, video):
    """A push stream, SIGKILL of the encoder, then a question before any frame: the restarted
    encoder says it lacks the stream, the kept frames are replayed (under the stream's push lock)
    and the question is answered from them; the next push lands right after them, with no gap."""
    import os
    import signal

    from scenekv.ingest import open_source

    with open_source(video, fps=1.0) as src:
        frames = [(f.pts, f.image) for f in src][:20]
    sid = service.start_stream("push", fps=1.0, carriers="pool:4").stream_id
    for pts, image in frames[:18]:
        service.push_frame(sid, pts, image)
    last = frames[17][0]  # the newest frame: only on the device (the window), never in Redis
    assert (service.store.stored_pts(sid) or 0.0) < last
    os.kill(ray.get(service.encoder.pid.remote()), signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:
        try:
            done = list(service.ask(sid, "What happened?", at=last, max_tokens=3))[-1]
        except EncoderUnavailable as exc:  # while Ray restarts it
            done = exc
        if isinstance(done, AnswerDone):
            break
        assert getattr(done, "code", None) == "encoder_unavailable" and time.monotonic() < deadline, done
        time.sleep(0.5)
    assert any(e["start"] <= last <= e["end"] for e in done.evidence), done  # not anchor_in_future
    service.push_frame(sid, *frames[18])  # taken right after the replayed frames
    service.push_frame(sid, *frames[19])
    service.end_stream(sid)
    info = service.store.info(sid)
    assert info.last_pts == frames[19][0] and info.next_index == 20  # every frame once, in order
