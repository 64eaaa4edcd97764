"""The pure parts of a stream's coordinator: where the window is cut, and the resume state."""

from __future__ import annotations

import torch

from scenekv.memory.chunk_cuts import ChunkCut, plan_cuts, scene_of
from scenekv.memory.resume import StreamResume


def test_cuts_keep_the_window_and_never_cross_a_scene_boundary():
    starts = [(0, 0), (5, 1), (13, 2)]  # scene 1 starts at kept frame 5, scene 2 at 13
    cuts = plan_cuts(list(range(20)), keep=6, chunk_frames=4, starts=starts)
    assert cuts == [
        ChunkCut((0, 1, 2, 3), 0),
        ChunkCut((4,), 0),  # cut short at the boundary: every chunk is one scene's
        ChunkCut((5, 6, 7, 8), 1),
        ChunkCut((9, 10, 11, 12), 1),
        ChunkCut((13, 14, 15, 16), 2),
    ]
    assert 20 - sum(len(c.frames) for c in cuts) == 3 <= 6  # what stays resident: at most keep
    assert plan_cuts(list(range(6)), keep=6, chunk_frames=4, starts=starts) == []
    assert [scene_of(starts, i) for i in (0, 4, 5, 12, 13, 99)] == [0, 0, 1, 1, 2, 2]


def test_resume_state_survives_the_stream_hash():
    state = StreamResume(41, 977, 40.0, 44.0, 39, torch.tensor([0.6, 0.8]), {"count": 3})
    fields = state.to_fields()
    as_redis = {k: str(v).encode() if not isinstance(v, bytes) else v for k, v in fields.items()}
    back = StreamResume.from_fields(as_redis)
    assert (back.next_index, back.next_pos, back.last_pts, back.newest_pts, back.last_kept) == (
        41,
        977,
        40.0,
        44.0,
        39,
    )
    assert torch.equal(back.last_signature, state.last_signature) and back.tiler == {"count": 3}
    point = back.point()
    assert (point.next_index, point.next_position, point.last_pts) == (41, 977, 40.0)
    empty = StreamResume.from_fields({})
    assert empty.next_index == 0 and empty.last_pts is None and empty.tiler is None
