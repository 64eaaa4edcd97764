"""Which chunks an anchored question's context holds (qa/context.py)."""

from __future__ import annotations

from scenekv.qa.context import ChunkRef, plan_context


def test_an_anchor_inside_a_dedup_gap_gets_the_chunk_on_screen_then():
    """With dedup a still stretch keeps only its first frame: at 0:20 of a scene that started at
    0:00 and stayed still until 0:30, the chunk holding the 0:00 frame is what was on screen, not the
    next scene's chunk that merely lies nearest."""
    still = ChunkRef("still", 0.0, 1.0, 32, 2)
    nxt = ChunkRef("next", 30.0, 37.0, 128, 8)
    plan = plan_context([still, nxt], window=(19.0, 21.0), now=40.0, budget_tokens=4096)
    assert plan.anchored[0] == "still"
    # and the evidence says the still frame was on screen through the asked time (the player's chip
    # seeks there), not just 0:00-0:01
    assert any(e["start"] <= 0.0 and e["end"] >= 20.0 for e in plan.evidence())


def test_a_chunk_covering_the_anchor_is_all_it_takes():
    a = ChunkRef("a", 0.0, 7.0, 128, 8)
    b = ChunkRef("b", 8.0, 15.0, 128, 8)
    c = ChunkRef("c", 16.0, 23.0, 128, 8)
    plan = plan_context([a, b, c], window=(11.0, 13.0), now=24.0, budget_tokens=4096)
    assert plan.anchored == ["b"]
