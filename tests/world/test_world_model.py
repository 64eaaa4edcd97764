"""The committed world model understands a held-out world video, through the real service path.

A video rendered here from a seed never used in training goes through what `scenekv ask` runs: Ray
actors decode and encode it, chunks go to Redis, SceneTiling closes and captions scenes, questions
are answered from memory (anchors, retrieval, re-rotation). Answers are graded against the video's
ground-truth sidecar. One service for the whole module.
"""

from __future__ import annotations

import pytest

from scenekv.units import clock
from scenekv.workers.results import AnswerDone
from scenekv.world.grading import interior_times, times_in
from scenekv.world.render import make_world_video
from scenekv.world.truth import load_truth

from support.redis_fixtures import drop_prefix

HELD_OUT_SEED = 424_242  # training renders seeds 100000+ (world/recipe.py); this is none of them
DURATION = 150.0


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("world") / "held-out.mp4"
    make_world_video(path, seed=HELD_OUT_SEED, duration=DURATION, size=(640, 360), fps=10)
    return path


@pytest.fixture(scope="module")
def ingested(redis_url, video):
    import uuid

    from scenekv.workers.blocking_service import BlockingService

    pfx = f"skvtest:{uuid.uuid4().hex[:12]}:"
    svc = BlockingService(model="scenekv-world", redis_url=redis_url, prefix=pfx, num_cpus=2)
    try:
        sid, _ = svc.ingest_file(str(video), fps=1.0, carriers="pool:16")
        yield svc, sid
    finally:
        svc.shutdown()
        drop_prefix(redis_url, pfx)


def _answer(svc, sid: str, question: str, **anchor) -> AnswerDone:
    items = list(svc.ask(sid, question, max_tokens=24, **anchor))
    done = items[-1]
    assert isinstance(done, AnswerDone), done
    return done


def test_the_model_is_the_world_model_and_says_so(ingested):
    svc, _ = ingested
    assert svc.model["model"] == "scenekv-world"
    assert svc.model["random_weights"] is False and svc.model["world_only"] is True


def test_background_at_a_time(ingested, video):
    svc, sid = ingested
    truth = load_truth(video)
    times = interior_times(truth, 20)
    right = []
    for t in times:
        got = _answer(svc, sid, f"What colour is the background at {clock(t)}?").text.strip()
        right.append(got == truth.scene_at(t).background)
    assert sum(right) >= 18, list(zip(times, right, strict=True))


def test_object_at_a_time(ingested, video):
    """Which object is there, colour and shape ("purple triangle"), or "nothing"."""
    svc, sid = ingested
    truth = load_truth(video)
    times = interior_times(truth, 20)
    right = []
    for t in times:
        got = _answer(svc, sid, "What shape is on screen?", at=t).text.strip()
        right.append(got == truth.scene_at(t).object_name)
    assert sum(right) >= 16, list(zip(times, right, strict=True))


def _when_cases(truth) -> tuple[list, str]:
    """The objects that appear in exactly one scene, and one that never appears."""
    names = [s.object_name for s in truth.scenes]
    unique = [s for s in truth.scenes if s.object and names.count(s.object_name) == 1]
    absent = next(
        f"{c} {o}"
        for c in ("white", "black", "red", "blue")
        for o in ("square", "circle")
        if f"{c} {o}" not in names
    )
    return unique, absent


def test_the_held_out_video_can_grade_when(video):
    """Not the model: the video itself has what the `when` test below asks about (kept apart, so a
    bad video fails here, not as a model that cannot answer)."""
    unique, absent = _when_cases(load_truth(video))
    assert len(unique) >= 3 and absent


def test_when_did_it_appear(ingested, video):
    """ "When did the X appear?" / "When was the background C?" name the start of the scene showing
    it (+-2 s) and no other time, for every object and background that appears in one scene of the
    video, with that scene as its evidence; and "never" for an object that never does. The model
    reads each scene (qa/scene_check.py)."""
    svc, sid = ingested
    truth = load_truth(video)
    unique, absent = _when_cases(truth)
    backgrounds = [s.background for s in truth.scenes]
    asked = [(s, f"When did the {s.object_name} appear?") for s in unique]
    once = [s for s in truth.scenes if backgrounds.count(s.background) == 1]
    asked += [(s, f"When was the background {s.background}?") for s in once]
    got = {}
    for s, question in asked:
        done = _answer(svc, sid, question)
        got[question] = (s.start, done.text, done.evidence)
    right = [
        len(times_in(a)) == 1 and abs(times_in(a)[0] - start) <= 2.0 and abs(ev[0]["start"] - start) <= 2.0
        for start, a, ev in got.values()
    ]
    assert sum(right) >= 0.75 * len(right), got
    assert _answer(svc, sid, f"When did the {absent} appear?").text.strip() == "never"


def test_scene_captions_name_background_and_object(ingested, video):
    svc, sid = ingested
    truth = load_truth(video)
    scenes = svc.scenes(sid)
    assert abs(len(scenes) - len(truth.scenes)) <= 1
    right = []
    for s in scenes:
        end = s.end if s.end is not None else truth.duration
        want = truth.scene_at((s.start + end) / 2)
        caption = s.caption.strip()
        right.append(caption == want.describe())
    assert sum(right) >= 0.8 * len(scenes), [(s.start, s.caption) for s in scenes]


def test_dedup_keeps_anchored_answers_right(ingested, video):
    """With ``+dedup`` a still stretch keeps one frame; a time inside it is answered from that frame,
    not from the next scene's chunk (SceneKV-Bench measured 29 % at dedup:0.98 before the anchor plan
    knew it; here, at 0.9, it missed this bar before)."""
    svc, _ = ingested
    sid, _ = svc.ingest_file(str(video), fps=1.0, carriers="pool:16+dedup:0.9")
    truth = load_truth(video)
    times = interior_times(truth, 10)
    right, cited = [], []
    for t in times:
        done = _answer(svc, sid, f"What colour is the background at {clock(t)}?")
        right.append(done.text.strip() == truth.scene_at(t).background)
        # the evidence reaches the asked time: the kept frame was on screen until then
        cited.append(any(e["start"] - 1.0 <= t <= e["end"] + 1.0 for e in done.evidence))
    assert sum(right) >= 9, list(zip(times, right, strict=True))
    assert sum(cited) >= 9, list(zip(times, cited, strict=True))


def test_a_uniform_baseline_reads_its_few_frames_and_answers_worse(ingested, video):
    """``policy="uniform:4"`` (what SceneKV-Bench compares against) reads four frames spread over
    the video, whatever the anchor: a question between them is answered from another scene's frame.
    The shipped plan reads the anchor's own chunk."""
    svc, sid = ingested
    truth = load_truth(video)
    shipped, uniform = [], []
    for t in interior_times(truth, 10):
        question, want = f"What colour is the background at {clock(t)}?", truth.scene_at(t).background
        shipped.append(_answer(svc, sid, question).text.strip() == want)
        done = _answer(svc, sid, question, policy="uniform:4")
        uniform.append(done.text.strip() == want)
        assert done.usage["memory_tokens"] <= 4 * 24, done.usage  # <= 4 frames of 16 carriers + tag
    assert sum(shipped) >= 9 and sum(uniform) <= 7, (shipped, uniform)


def test_an_anchored_context_ends_at_the_anchor(ingested):
    """The world model reads "at T" as the stream was at T: nothing after T is in its context."""
    svc, sid = ingested
    done = _answer(svc, sid, "What colour is the background?", at=40.0)
    assert done.evidence and max(e["end"] for e in done.evidence) <= 40.0
