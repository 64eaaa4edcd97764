"""Answering from memory: anchors, evidence, retrieval, no re-encoding, cancel (tiny model, real Redis)."""

from __future__ import annotations

import threading

import pytest
import torch

from scenekv.ingest import open_source
from scenekv.memory import ChunkKeys, RollingConfig, RollingMemory
from scenekv.qa.anchors import AnchorInFuture
from scenekv.qa.engine import QAEngine
from scenekv.qa.memory_view import LIVE_PREFIX, MemoryView
from scenekv.vlm import SamplingParams
from scenekv.world.cut_video import make_video

from support.tiny_model import frames, tiny


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = make_video(
        tmp_path_factory.mktemp("qa") / "v.mp4", duration=40, fps=2, size=(160, 120), cuts=(13.5, 27.5)
    )
    with open_source(path, fps=1.0) as src:
        return [(f.pts, f.image) for f in src]


@pytest.fixture
def rolling(store, video):
    config = RollingConfig(window=12, chunk_frames=4)
    mem = RollingMemory.create(store, tiny(), carriers="pool:4", source="v.mp4", config=config)
    for i in range(0, len(video), 8):
        mem.append(video[i : i + 8])
    mem.flush()
    yield mem
    mem.detach()


@pytest.fixture(scope="module")
def engine():
    return QAEngine(tiny(), budget_tokens=400, top_k=2)


def test_anchored_question_cites_the_anchor_and_reuses_memory(rolling, engine):
    encoded = tiny().frames_encoded
    view = MemoryView.of(rolling)
    refs = view.refs()
    assert any(r.cid.startswith(LIVE_PREFIX) for r in refs) and any(
        not r.cid.startswith(LIVE_PREFIX) for r in refs
    )
    answer = engine.ask(view, "What happened at 0:05?", params=SamplingParams(max_new_tokens=6))
    deltas = list(answer)
    assert "".join(deltas) == answer.text
    assert any(span["start"] <= 5.0 <= span["end"] for span in answer.evidence)
    assert answer.usage["memory_tokens"] <= 400 and answer.usage["generated_tokens"] >= 1
    assert answer.usage["prompt_tokens"] > answer.usage["memory_tokens"]
    assert answer.ttft_ms is not None and answer.ttft_ms > 0
    again = engine.ask(MemoryView.of(rolling), "and at 0:30?", params=SamplingParams(max_new_tokens=3))
    list(again)
    assert any(span["start"] <= 30.0 <= span["end"] for span in again.evidence)
    assert tiny().frames_encoded == encoded  # two questions, no frame through the vision tower


def test_last_seconds_uses_the_live_window(rolling, engine):
    answer = engine.ask(MemoryView.of(rolling), "what happened in the last 5 seconds?")
    list(answer)
    now = rolling.last_pts
    assert answer.evidence[-1]["end"] == pytest.approx(now)
    assert any(c.cid.startswith(LIVE_PREFIX) for c in answer.plan.chunks)


def test_future_anchor_is_a_clear_error(rolling, engine):
    with pytest.raises(AnchorInFuture, match="has not happened yet"):
        engine.ask(MemoryView.of(rolling), "what happens at 5:00?")
    with pytest.raises(AnchorInFuture):
        engine.ask(MemoryView.of(rolling), "describe", at=999)


def test_retrieval_brings_back_a_planted_chunk(store, rolling, engine):
    """Plumbing, not quality: a chunk whose key is planted to match the question's queries (cosine 1
    by construction) is retrieved even far from the anchor, so scores reach the plan and the
    evidence. Whether retrieval finds the right part of a real stream is measured on the trained
    world model (docs/benchmarks.md; tests/world/test_world_model.py's `when` test)."""
    question = "is there a red car?"
    queries = engine.answerer.queries(engine.answerer.question_ids(question))
    index = store.chunk_index(rolling.sid)
    planted = index[1]  # an early chunk, outside the recent window
    chunk = store.load_chunks(rolling.sid, [planted.cid])[0]
    store.write_chunk(rolling.sid, chunk, ChunkKeys(queries.clone(), torch.zeros(0)), scene=planted.scene)
    answer = engine.ask(MemoryView(store, rolling.sid), question, params=SamplingParams(max_new_tokens=2))
    list(answer)
    assert answer.plan.retrieved[0] == planted.cid
    assert any(s["start"] <= planted.first_pts and planted.last_pts <= s["end"] for s in answer.evidence)


def test_cancel_stops_generation_between_tokens(rolling, engine):
    cancel = threading.Event()
    answer = engine.ask(
        MemoryView.of(rolling), "describe", params=SamplingParams(max_new_tokens=50), cancel=cancel
    )
    got = []
    for delta in answer:
        got.append(delta)
        cancel.set()
    assert answer.finish_reason == "cancelled"
    assert len(answer.generation.token_ids) <= 2


def test_questions_on_an_empty_stream_and_bad_questions(store, engine):
    mem = RollingMemory.create(
        store, tiny(), carriers="pool:4", config=RollingConfig(window=12, chunk_frames=4)
    )
    try:
        with pytest.raises(AnchorInFuture, match="no frames yet"):
            engine.ask(MemoryView.of(mem), "what happened at 0:01?")
        answer = engine.ask(MemoryView.of(mem), "anything?", params=SamplingParams(max_new_tokens=2))
        list(answer)
        assert answer.evidence == [] and answer.usage["memory_tokens"] == 0
        with pytest.raises(Exception, match="empty"):
            engine.ask(MemoryView.of(mem), "   ")
        mem.append(frames(3))
        assert MemoryView.of(mem).now() == 2.0
    finally:
        mem.detach()


def test_a_chunk_dropped_by_retention_mid_question_is_left_out_not_fatal(store, rolling, engine):
    class RacingView(MemoryView):
        """Retention drops the first planned stored chunk after planning, before loading."""

        def load(self, cids):
            victim = next(c for c in cids if not c.startswith(LIVE_PREFIX))
            self.store.drop_chunk(self.sid, victim)
            self.dropped = victim
            return super().load(cids)

    view = RacingView(store, rolling.sid)
    answer = engine.ask(view, "what happened at 0:05?", params=SamplingParams(max_new_tokens=2))
    list(answer)
    assert view.dropped not in [c.cid for c in answer.plan.chunks]
    assert answer.usage["chunks"] == len(answer.plan.chunks)


def test_a_when_question_reads_one_frame_per_scene(store, video, engine):
    """ "When …?" is answered from each scene's first frame (qa/scene_heads.py): the evidence is the
    scene starts SceneTiling found, each a single frame, not chunks around the present."""
    mem = RollingMemory.create(
        store, tiny(), carriers="pool:4", source="v.mp4", config=RollingConfig(window=12, chunk_frames=4)
    )
    try:
        for i in range(0, len(video), 8):
            mem.append(video[i : i + 8])
        mem.flush()
        starts = [s.start for s in store.scenes(mem.sid)]
        assert len(starts) == 3  # the video cuts at 13.5 s and 27.5 s
        answer = engine.ask(MemoryView.of(mem), "When was the background red?")
        list(answer)
        assert answer.evidence == [{"start": s, "end": s} for s in starts]
        view = MemoryView.of(mem)
        tokens = {f.pts: f.tokens for c in view.load([r.cid for r in view.refs()]).values() for f in c.frames}
        assert answer.usage["memory_tokens"] == sum(tokens[s] for s in starts)
        assert answer.usage["chunks"] == 3
        # over a budget of two frames, two heads stay; an ordinary question still reads chunks
        small = QAEngine(tiny(), budget_tokens=max(tokens.values()) * 2, top_k=2)
        two = small.ask(MemoryView.of(mem), "At what time did it turn blue?")
        list(two)
        assert len(two.evidence) == 2 and two.usage["memory_tokens"] <= max(tokens.values()) * 2
        other = engine.ask(MemoryView.of(mem), "What is on screen?", params=SamplingParams(max_new_tokens=2))
        list(other)
        assert other.usage["memory_tokens"] > answer.usage["memory_tokens"]
    finally:
        mem.detach()


def test_retrieval_scores_are_computed_only_where_they_can_change_the_context(store, video, rolling):
    """Scoring chunks runs the question through the model once more: skipped where the recent
    window already holds every chunk, with the same context and answer as when it is computed."""

    class Always(QAEngine):  # what the engine did before: scores for every question
        def _may_retrieve(self, *args) -> bool:
            return True

    def counted(engine: QAEngine) -> list[int]:
        calls, queries = [], engine.answerer.queries
        engine.answerer.queries = lambda ids: calls.append(1) or queries(ids)
        return calls

    config = RollingConfig(window=12, chunk_frames=4)
    short = RollingMemory.create(store, tiny(), carriers="pool:4", source="short", config=config)
    try:
        short.append(video[:10])  # 10 s: inside the recent 30 s
        short.flush()
        lean, full = QAEngine(tiny(), budget_tokens=400, top_k=2), Always(tiny(), budget_tokens=400, top_k=2)
        lean_calls, full_calls = counted(lean), counted(full)
        params = SamplingParams(max_new_tokens=6)
        a = lean.ask(MemoryView.of(short), "What happens?", params=params)
        b = full.ask(MemoryView.of(short), "What happens?", params=params)
        assert (list(a), a.evidence, a.usage) == (list(b), b.evidence, b.usage)  # the same answer
        assert lean_calls == [] and full_calls == [1]  # without the extra forward pass
        # a 40 s stream asked about 0:05: chunks outside the anchor's window may be retrieved
        lean.ask(MemoryView.of(rolling), "What happened at 0:05?", params=SamplingParams(max_new_tokens=1))
        assert lean_calls == [1]
    finally:
        short.detach()
