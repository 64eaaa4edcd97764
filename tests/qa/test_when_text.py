"""`When` for a checkpoint without frame readings (the tiny LLaVA-OneVision, like a real one): the
scenes whose captions match are the candidates, a bounded number of them checked by the model, so a
long stream costs no more model passes than a short one; a stream with no captions keeps the
scene-heads context."""

from __future__ import annotations

import pytest

from scenekv.memory import RollingConfig, RollingMemory
from scenekv.qa.engine import QAEngine
from scenekv.qa.memory_view import MemoryView
from scenekv.qa.when_text import MAX_CANDIDATES
from scenekv.world.cut_video import make_video

from support.tiny_model import tiny


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from scenekv.ingest import open_source

    path = make_video(
        tmp_path_factory.mktemp("wt") / "v.mp4", duration=48, fps=2, size=(160, 120), cuts=(24.0,)
    )
    with open_source(path, fps=1.0) as src:
        return [(f.pts, f.image) for f in src]


@pytest.fixture
def stream(store, video):
    mem = RollingMemory.create(
        store, tiny(), carriers="pool:4", source="v.mp4", config=RollingConfig(window=12, chunk_frames=4)
    )
    for i in range(0, len(video), 8):
        mem.append(video[i : i + 8])
    mem.flush()
    yield mem
    mem.detach()


def _scenes(store, sid: str, captions: list[str], length: float) -> None:
    """Scene records over the stored frames: ``captions[i]`` for [i * length, (i + 1) * length)."""
    for i, caption in enumerate(captions):
        fields = {"end": (i + 1) * length, "closed": "1", "caption": caption}
        store.put_scene(sid, i, i * length, fields)
        store.put_caption_words(sid, i * length, caption)


def _counted(engine: QAEngine) -> list:
    calls: list = []
    read = engine.answerer.read

    def counting(ids, chunks, max_new_tokens=8):
        calls.append([c.first_pts for c in chunks])
        return read(ids, chunks, max_new_tokens=max_new_tokens)

    engine.answerer.read = counting
    return calls


def test_candidates_come_from_the_captions_and_the_newest_uncaptioned_scene(store, stream):
    """Four 12-second scenes: the truck's caption, two others that do not name it (one says
    "appears": a question word, not a thing), and the newest, not captioned yet (text cannot rank
    what is on screen now): two reads, each on the scene's own frames."""
    captions = ["a red field appears", "a white truck at the gate", "a green field", ""]
    _scenes(store, stream.sid, captions, 12.0)
    engine = QAEngine(tiny(), budget_tokens=400, top_k=2)
    calls = _counted(engine)
    answer = engine.ask(MemoryView.of(stream), "When did the truck appear?")
    list(answer)
    assert len(calls) == 2
    assert all(12.0 <= t < 24.0 for t in calls[0]) and all(36.0 <= t < 48.0 for t in calls[1])
    assert answer.text in ("never", "at 00:12", "at 00:36", "at 00:12, 00:36")  # random weights
    assert {e["start"] for e in answer.evidence} <= {12.0, 36.0}


def test_a_long_stream_costs_no_more_model_passes_than_a_short_one(store, stream):
    engine = QAEngine(tiny(), budget_tokens=400, top_k=2)
    calls = _counted(engine)
    _scenes(store, stream.sid, ["a red field", "a white truck at the gate", "a green field"], 16.0)
    list(engine.ask(MemoryView.of(stream), "When did the truck arrive?"))
    short = len(calls)
    # the same frames cut into 48 one-second scenes, half of them captioned with a truck
    _scenes(store, stream.sid, [f"scene {i} " + ("a truck" if i % 2 else "a field") for i in range(48)], 1.0)
    calls.clear()
    list(engine.ask(MemoryView.of(stream), "When did the truck arrive?"))
    assert short == 1 and len(calls) == MAX_CANDIDATES  # bounded, while 24 scenes match


def test_a_stream_without_captions_keeps_the_scene_heads_context(store, stream):
    engine = QAEngine(tiny(), budget_tokens=400, top_k=2)
    calls = _counted(engine)
    answer = engine.ask(MemoryView.of(stream), "When was the background red?")
    list(answer)
    assert calls == [] and answer.evidence  # one generation over each scene's first frame
