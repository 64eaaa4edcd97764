"""The content index through the encoder path (StreamHub, the committed world model, real Redis):
frames read as scheduled work after their append, `when` answered from the index at frame precision,
with model work per question that does not grow with the stream, and streams recorded before the
index read on first use."""

from __future__ import annotations

from functools import lru_cache

import pytest

from scenekv.ingest import open_source
from scenekv.memory import RollingConfig, TilingParams
from scenekv.vlm import load_backend
from scenekv.workers.stream_hub import StreamHub
from scenekv.world.grading import times_in
from scenekv.world.render import make_world_video
from scenekv.world.truth import Transition, WorldScene, WorldTruth, load_truth

SEED = 515_151  # not a training seed (those are 100000+ in world/recipe.py's own range)


@lru_cache(maxsize=1)
def world():
    return load_backend("scenekv-world")


def _frames(path) -> list:
    with open_source(path, fps=1.0) as src:
        return [(f.pts, f.image) for f in src]


@pytest.fixture(scope="module")
def mid_scene(tmp_path_factory):
    """30 s on one yellow background; a purple triangle appears at 14 s with no other change."""
    scenes = [
        WorldScene(0.0, 14.0, "yellow"),
        WorldScene(14.0, 30.0, "yellow", "triangle", "purple", 0.35, (0.3, 0.5, 0.3, 0.5)),
    ]
    truth = WorldTruth(0, 30.0, scenes, [Transition(14.0, "cut")])
    path = tmp_path_factory.mktemp("readings") / "mid.mp4"
    make_world_video(path, seed=0, duration=30.0, size=(320, 180), fps=5, truth=truth)
    return _frames(path)


@pytest.fixture(scope="module")
def world_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("readings") / "world.mp4"
    make_world_video(path, seed=SEED, duration=130.0, size=(320, 180), fps=5)
    return load_truth(path), _frames(path)


def _ingest(hub: StreamHub, frames, *, read: bool = True) -> str:
    sid = hub.open(source="test")["stream_id"]
    for i in range(0, len(frames), 8):
        hub.append(sid, frames[i : i + 8])
        if read:
            hub.background_step()  # what the encoder's scheduler runs between batches
    return sid


def _counted(hub: StreamHub, monkeypatch) -> dict:
    """Model reads (Answerer.read) and language-model forwards made from here on (every pass,
    single or packed, goes through ``forward_hidden``)."""
    counts = {"reads": 0, "forwards": 0}
    answerer, backend = hub.engine.answerer, hub.backend
    read, forward = answerer.read, backend.forward_hidden

    def counted_read(*args, **kwargs):
        counts["reads"] += 1
        return read(*args, **kwargs)

    def counted_forward(*args, **kwargs):
        counts["forwards"] += 1
        return forward(*args, **kwargs)

    monkeypatch.setattr(answerer, "read", counted_read)
    monkeypatch.setattr(backend, "forward_hidden", counted_forward)
    return counts


def _when(hub: StreamHub, sid: str, question: str, **anchor):
    answer = hub.ask(sid, question, **anchor)
    list(answer)
    return answer


def test_frames_are_read_after_their_append_and_a_mid_scene_onset_is_found_at_its_frame(store, mid_scene):
    """SceneTiling is told to make no cut (as when it misses one): the whole video is one scene, so a
    scene-level answer could only say 00:00. The index finds the triangle at its first frame."""
    config = RollingConfig(window=12, chunk_frames=4, tiler=TilingParams(min_scene_s=1e9))
    hub = StreamHub(world(), store, rolling=config, captions=False)
    seen = []
    hub.on_readings.append(lambda sid, readings: seen.extend(readings))
    sid = hub.open(source="mid")["stream_id"]
    hub.append(sid, mid_scene[:8])
    assert hub.reader.reads == 0 and store.readings(sid) == []  # never inside the append
    steps = 0
    while hub.background_step() == 0.0:
        steps += 1
    assert [r.pts for r in store.readings(sid)] == [float(t) for t in range(8)]
    assert steps >= 2 * 8 and hub.reader.reads == 16  # one model read a step: object, then background
    for i in range(8, len(mid_scene), 8):
        hub.append(sid, mid_scene[i : i + 8])
        hub.background_step()
    hub.end(sid)  # makes the readings still due
    assert len(store.scenes(sid)) == 1
    readings = store.readings(sid)
    assert [r.pts for r in readings] == [p for p, _ in mid_scene] and seen == readings
    assert {r.background for r in readings} == {"yellow"}
    answer = _when(hub, sid, "When did the purple triangle appear?")
    (onset,) = times_in(answer.text)
    assert abs(onset - 14) <= 1, answer.text
    assert abs(answer.evidence[0]["start"] - 14) <= 1 and answer.evidence[0]["end"] >= 29
    assert _when(hub, sid, "When was the background yellow?").text == "at 00:00"
    assert _when(hub, sid, "When did the purple triangle appear in the last 10 seconds?").text == "at 00:19"


def test_a_when_question_on_a_long_stream_makes_no_more_model_passes_than_on_a_short_one(
    store, world_video, monkeypatch
):
    """Both streams are read as they are ingested; then three frames more arrive on each, not read
    yet. A `when` question reads those three and nothing else, however long the stream."""
    truth, frames = world_video
    hub = StreamHub(world(), store, rolling=RollingConfig(window=12, chunk_frames=4), captions=False)
    short, long = _ingest(hub, frames[:24]), _ingest(hub, frames[:120])
    while hub.background_step() == 0.0:
        pass
    assert store.read_through(short) == frames[23][0] and store.read_through(long) == frames[119][0]
    name = next(s.object_name for s in truth.scenes if s.object and s.start < 20)
    counts = _counted(hub, monkeypatch)
    passes = {}
    for sid, n in ((short, 24), (long, 120)):
        answer = _when(hub, sid, f"When did the {name} appear?")
        passes[sid, "indexed"] = dict(counts)
        assert times_in(answer.text), answer.text
        hub.append(sid, frames[n : n + 3])  # not read yet: the question reads them itself
        counts.update(reads=0, forwards=0)
        _when(hub, sid, f"When did the {name} appear?")
        passes[sid, "tail"] = dict(counts)
        counts.update(reads=0, forwards=0)
    assert passes[short, "indexed"] == passes[long, "indexed"] == {"reads": 0, "forwards": 0}
    assert passes[short, "tail"]["reads"] == passes[long, "tail"]["reads"] == 3
    # each read is one prefill and a few greedy tokens (as many as the frame's label has)
    assert passes[short, "tail"]["forwards"] <= 3 * 9 and passes[long, "tail"]["forwards"] <= 3 * 9


def test_a_stream_recorded_before_the_index_is_scanned_then_read_on_first_use(store, world_video):
    truth, frames = world_video
    hub = StreamHub(world(), store, rolling=RollingConfig(window=12, chunk_frames=4), captions=False)
    hub.reads_frames = False  # as a SceneKV before the index recorded it
    sid = _ingest(hub, frames[:60], read=False)
    hub.end(sid)
    assert store.read_through(sid) is None
    hub.reads_frames = True
    name = next(s.object_name for s in truth.scenes if s.object and s.start < 50)
    question = f"When did the {name} appear?"
    scanned = _when(hub, sid, question)
    assert scanned.usage["chunks"] > 0  # the scene scan read frames of every scene
    assert hub.readings_due.due(sid) == 1  # ... and the stream's readings are now due
    while hub.background_step() == 0.0:
        pass
    assert [r.pts for r in store.readings(sid)] == [p for p, _ in frames[:60]]
    assert not hub.readings_due.jobs  # a stream not open here is not kept once read
    indexed = _when(hub, sid, question)
    assert indexed.usage["chunks"] == 0 and times_in(indexed.text) == times_in(scanned.text)


def test_a_checkpoint_without_frame_readings_indexes_its_caption_words(store, monkeypatch):
    """The tiny random model has no ``scene_check``: no frame is read, and each scene's caption (made
    as scheduled work; a fixed text here, the random model's is noise) is indexed by its words."""
    from support.tiny_model import frames, tiny

    class Caption:
        text = "A red square on a blue background."

        def __iter__(self):
            yield self.text

    hub = StreamHub(tiny(), store, rolling=RollingConfig(window=8, chunk_frames=4), caption_tokens=6)
    monkeypatch.setattr(hub, "_caption_answer", lambda sid, start, end: Caption())
    assert not hub.reads_frames
    sid = hub.open(carriers="pool:4")["stream_id"]
    hub.append(sid, frames(10))
    hub.end(sid)
    assert store.readings(sid) == [] and hub.reader.reads == 0
    assert set(store.index_labels(sid)) == {"word:red", "word:square", "word:blue", "word:background"}
    assert store.index_times(sid, "word:square") == [s.start for s in store.scenes(sid)]
