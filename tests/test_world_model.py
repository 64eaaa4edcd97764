"""The committed world model understands a held-out world video, through the real service path.

A video rendered here from a seed never used in training goes through what `scenekv ask` runs: Ray
actors decode and encode it, chunks go to Redis, SceneTiling closes and captions scenes, questions
are answered from memory (anchors, retrieval, re-rotation). Answers are graded against the video's
ground-truth sidecar. One service for the whole module.
"""

# ruff: noqa: F811  (pytest fixtures imported from redis_fixtures are redefined as parameters)

from __future__ import annotations

import pytest

from scenekv.ingest.world import load_truth, make_world_video
from scenekv.vlm.prompt import clock

from redis_fixtures import redis_url  # noqa: F401

HELD_OUT_SEED = 424_242  # training renders seeds 100000+ (scenekv/world_train.py); this is none of them
DURATION = 150.0


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("world") / "held-out.mp4"
    make_world_video(path, seed=HELD_OUT_SEED, duration=DURATION, size=(640, 360), fps=10)
    return path


@pytest.fixture(scope="module")
def ingested(redis_url, video):
    import uuid

    import redis

    from scenekv.cmd_ingest_common import ingest_file
    from scenekv.workers.service import SceneKVService

    pfx = f"skvtest:{uuid.uuid4().hex[:12]}:"
    svc = SceneKVService(model="scenekv-world", redis_url=redis_url, prefix=pfx, num_cpus=2)
    try:
        sid, _ = ingest_file(svc, str(video), fps=1.0, carriers="pool:16")
        yield svc, sid
    finally:
        svc.shutdown()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{pfx}*"))
        if keys:
            client.delete(*keys)


def _answer(svc, sid: str, question: str, **anchor) -> dict:
    items = list(svc.ask(sid, question, max_tokens=24, **anchor))
    done = items[-1]
    assert done["type"] == "done", done
    return done


def _interior_times(truth, n: int) -> list[float]:
    """``n`` whole-second times spread over the video, each >= 2 s away from any scene boundary."""
    edges = [s.start for s in truth.scenes[1:]]
    pool = [t for t in range(1, int(truth.duration) - 1) if all(abs(t - e) >= 2 for e in edges)]
    step = len(pool) / n
    return [float(pool[int(i * step)]) for i in range(n)]


def test_the_model_is_the_world_model_and_says_so(ingested):
    svc, _ = ingested
    assert svc.model["model"] == "scenekv-world"
    assert svc.model["random_weights"] is False and svc.model["world_only"] is True


def test_background_at_a_time(ingested, video):
    svc, sid = ingested
    truth = load_truth(video)
    times = _interior_times(truth, 20)
    right = []
    for t in times:
        got = _answer(svc, sid, f"What colour is the background at {clock(t)}?")["answer"].strip()
        right.append(got == truth.scene_at(t).background)
    assert sum(right) >= 18, list(zip(times, right, strict=True))


def test_object_colour_at_a_time(ingested, video):
    """Which object is there (its colour, or nothing) is read right; its *shape* is not yet (the
    committed model names the shape at about chance: see its model card), so only the colour and the
    presence are graded here."""
    svc, sid = ingested
    truth = load_truth(video)
    times = _interior_times(truth, 20)
    right = []
    for t in times:
        got = _answer(svc, sid, "What shape is on screen?", at=t)["answer"].strip()
        scene = truth.scene_at(t)
        right.append(got.split(" ")[0] == (scene.object_colour or "nothing"))
    assert sum(right) >= 16, list(zip(times, right, strict=True))


def test_scene_captions_name_the_background(ingested, video):
    svc, sid = ingested
    truth = load_truth(video)
    scenes = svc.scenes(sid)
    assert abs(len(scenes) - len(truth.scenes)) <= 1
    right = []
    for s in scenes:
        end = s["end"] if s["end"] is not None else truth.duration
        want = truth.scene_at((s["start"] + end) / 2)
        caption = s["caption"].strip()
        right.append(caption.endswith(f"on {want.background}") or caption == f"{want.background} background")
    assert sum(right) >= 0.8 * len(scenes), [(s["start"], s["caption"]) for s in scenes]


def test_an_anchored_context_ends_at_the_anchor(ingested):
    """The world model reads "at T" as the stream was at T: nothing after T is in its context."""
    svc, sid = ingested
    done = _answer(svc, sid, "What colour is the background?", at=40.0)
    assert done["evidence"] and max(e["end"] for e in done["evidence"]) <= 40.0
