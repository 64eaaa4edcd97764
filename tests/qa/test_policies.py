"""Memory policies (qa/policies.py): the baselines read the frames they claim to, no more."""

from __future__ import annotations

import pytest

from scenekv.errors import UserError
from scenekv.qa.policies import MemoryPolicy, single_frames

from support.kv_chunks import PER_FRAME, chunk, ref


def stream(n_chunks: int = 10, frames: int = 8):
    chunks = [chunk(float(i * frames), frames) for i in range(n_chunks)]
    return chunks, [ref(f"c{i}", c) for i, c in enumerate(chunks)]


def test_policies_parse_and_bad_ones_are_one_clear_error():
    assert MemoryPolicy.parse(None) == MemoryPolicy("scenekv")
    assert MemoryPolicy.parse("uniform:32") == MemoryPolicy("uniform", 32)
    assert str(MemoryPolicy.parse("recent")) == "recent" and MemoryPolicy.parse("full").is_baseline
    assert MemoryPolicy.parse("Recent") == MemoryPolicy("recent")
    assert MemoryPolicy.parse("uniform:4").targets([]) == []  # a stream with nothing yet
    for bad in ("uniform", "uniform:0", "uniform:x", "uniform:\u00b2", "recent:3", "everything"):
        with pytest.raises(UserError, match="memory policy"):
            MemoryPolicy.parse(bad)


def test_recent_keeps_only_the_newest_chunks_under_the_budget():
    _, refs = stream()
    budget = 3 * 8 * PER_FRAME  # three chunks' worth
    picked = MemoryPolicy.parse("recent").refs(refs, budget_tokens=budget)
    assert [r.cid for r in picked] == ["c7", "c8", "c9"]
    everything = MemoryPolicy.parse("full").refs(refs, budget_tokens=10**6)
    assert everything == sorted(refs, key=lambda r: r.first_pts)


def test_uniform_reads_one_frame_near_each_of_n_evenly_spaced_times():
    chunks, refs = stream()  # 80 s, one frame a second
    policy = MemoryPolicy.parse("uniform:4")
    targets = policy.targets(refs)
    assert targets == [pytest.approx(t) for t in (9.875, 29.625, 49.375, 69.125)]
    picked = policy.refs(refs, budget_tokens=0)
    assert [r.cid for r in picked] == ["c1", "c3", "c6", "c8"]
    loaded = {r.cid: c for r, c in zip(refs, chunks, strict=True)}
    frames = policy.frames_of([loaded[r.cid] for r in picked], targets)
    assert [f.first_pts for f in frames] == [10.0, 30.0, 49.0, 69.0]
    assert all(f.tokens == PER_FRAME and len(f.frames) == 1 for f in frames)


def test_single_frames_cuts_every_frame_out():
    chunks, _ = stream(2, 3)
    frames = single_frames(chunks)
    assert [f.first_pts for f in frames] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(f.tokens == PER_FRAME for f in frames)
