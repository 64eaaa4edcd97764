"""Stream session behaviour: time order, export/evict, generation controls."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from scenekv.errors import UserError
from scenekv.vlm import SamplingParams, StreamSession

from support.tiny_model import frames, session


def test_frames_must_arrive_in_time_order():
    sess = session("pool:4")
    sess.append(frames(2, start=5.0))
    with pytest.raises(UserError, match="not after the previous frame"):
        sess.append(frames(1, start=5.5))
    assert [r.pts for r in sess.frames] == [5.0, 6.0]  # the rejected batch left no trace
    sess.append(frames(1, start=7.0))
    assert [r.index for r in sess.frames] == [0, 1, 2]


def test_a_chunk_cut_by_time_is_exactly_the_export_of_its_first_frames():
    sess = session("pool:4")
    sess.append(frames(4, start=2.0))
    whole, first_two = sess.export(0, 3), sess.export(0, 1)
    cut = whole.through(3.4)  # frames at 2.0 and 3.0 are at or before it
    assert [f.index for f in cut.frames] == [0, 1] and cut.position == whole.position
    assert torch.equal(cut.keys, first_two.keys) and torch.equal(cut.values, first_two.values)
    assert cut.span == cut.tokens == first_two.tokens
    assert whole.through(10.0) is whole and whole.through(1.9) is None


def test_one_frame_sliced_from_a_chunk_is_exactly_its_own_export():
    """A `when` context holds single frames cut from stored chunks: the cut must be the frame's own
    KV at its own position, so moving it anywhere equals moving the frame's export there."""
    sess = session("pool:4")
    sess.append(frames(4, start=2.0))
    whole, third = sess.export(0, 3), sess.export(2, 2)
    cut = whole.frame_at(3.5)  # the first frame at or after it: the one at 4.0
    assert [f.index for f in cut.frames] == [2] and cut.frames[0].offset == 0
    assert cut.position == third.position and cut.span == cut.tokens == third.tokens
    assert torch.equal(cut.keys, third.keys) and torch.equal(cut.values, third.values)
    inv_freq = sess.backend.rope_inv_freq()
    assert torch.equal(cut.moved_to(100, inv_freq).keys, third.moved_to(100, inv_freq).keys)
    assert whole.frame_at(5.5) is None and third.frame_at(0.0) is third


def test_export_carries_positions_times_and_bytes():
    sess = session("pool:16")
    recs = sess.append(frames(4, start=2.0, step=0.5))
    chunk = sess.export(1, 2)
    assert [f.index for f in chunk.frames] == [1, 2]
    assert (chunk.first_pts, chunk.last_pts) == (2.5, 3.0)
    assert chunk.position == recs[1].position
    assert chunk.tokens == recs[1].kv_tokens + recs[2].kv_tokens
    geo = sess.backend.geometry
    assert chunk.keys.shape == (geo.layers, geo.kv_heads, chunk.tokens, geo.head_dim)
    assert chunk.nbytes == chunk.tokens * geo.bytes_per_token
    assert chunk.carriers == "pool:16" and chunk.model_id == "tiny-random-llava-onevision"


def test_evict_frees_device_kv_but_keeps_positions_growing():
    sess = session("pool:16")
    recs = sess.append(frames(4))
    early = sess.export(0, 1)
    params = SamplingParams(max_new_tokens=3)
    before = sess.ask("what is at 0:01?", chunks=[early], params=params, record_logits=True)
    list(before)
    freed = sess.evict(1)
    assert freed == early.tokens
    assert sess.cache.get_seq_length() == sess.sink_len + recs[2].kv_tokens + recs[3].kv_tokens
    assert sess.resident_frames == [2, 3]
    later = sess.append(frames(1, start=4.0))
    assert later[0].position == recs[3].position + recs[3].kv_tokens  # positions never reused
    # the evicted chunk still answers, exactly as before the eviction
    after = sess.ask("what is at 0:01?", chunks=[early], params=params, record_logits=True)
    list(after)
    assert after.token_ids == before.token_ids
    assert all(torch.equal(a, b) for a, b in zip(after.logits, before.logits, strict=True))


def test_asking_does_not_change_the_stream_memory():
    sess = session("pool:4")
    sess.append(frames(3))
    before = sess.cache.get_seq_length()
    encoded = sess.backend.frames_encoded
    first = sess.ask("describe", params=SamplingParams(max_new_tokens=5), record_logits=True)
    list(first)
    again = sess.ask("describe", params=SamplingParams(max_new_tokens=5), record_logits=True)
    list(again)
    assert sess.cache.get_seq_length() == before
    assert torch.equal(first.logits[0], again.logits[0])
    assert sess.backend.frames_encoded == encoded  # questions never re-encode video


def test_max_tokens_cancel_and_sampling_seed():
    sess = session("pool:4")
    sess.append(frames(2))
    gen = sess.ask("go", params=SamplingParams(max_new_tokens=4, temperature=0.0))
    list(gen)
    assert gen.finish_reason == "length" and len(gen.token_ids) == 4
    cancel = threading.Event()
    cancel.set()
    stopped = sess.ask("go", params=SamplingParams(max_new_tokens=50), cancel=cancel)
    assert list(stopped) == [] and stopped.finish_reason == "cancelled" and stopped.token_ids == []
    a = sess.ask("go", params=SamplingParams(max_new_tokens=6, temperature=1.0, seed=7))
    b = sess.ask("go", params=SamplingParams(max_new_tokens=6, temperature=1.0, seed=7))
    assert "".join(a) == "".join(b) and a.token_ids == b.token_ids
    greedy = sess.ask("go", params=SamplingParams(max_new_tokens=6))
    list(greedy)
    assert greedy.token_ids != a.token_ids  # temperature 1 really samples


def test_stop_string_truncates_and_deltas_add_up():
    sess = session("pool:4")
    sess.append(frames(2))
    free = sess.ask("go", params=SamplingParams(max_new_tokens=12))
    text = "".join(free)
    assert text == free.text and len(text) >= 6
    stop = text[3:6]
    cut = sess.ask("go", params=SamplingParams(max_new_tokens=12, stop=(stop,)))
    deltas = list(cut)
    assert "".join(deltas) == cut.text == text[: text.find(stop)]
    assert cut.finish_reason == "stop"


def _solid(rgb) -> np.ndarray:
    img = np.zeros((96, 128, 3), np.uint8)
    img[...] = rgb
    return img


def test_a_resumed_session_continues_numbering_positions_and_dedup():
    red, green, blue = _solid((220, 20, 20)), _solid((20, 220, 20)), _solid((20, 20, 220))
    first = session("pool:4+dedup:0.95")
    first.append([(0.0, red), (1.0, green), (2.0, blue)])
    point = first.resume_point()
    again = StreamSession(first.backend, "pool:4+dedup:0.95", resume=point)
    with pytest.raises(UserError, match="not after"):
        again.append([(1.5, red)])
    recs = again.append([(5.0, blue.copy()), (6.0, red)])
    assert [r.index for r in recs] == [3, 4]
    assert recs[0].carriers == 0 and recs[0].kept_as == 2  # same picture as the last kept frame
    assert recs[1].carriers == 4 and recs[1].position == first.next_position


def test_the_anchor_frame_is_what_was_on_screen_at_that_moment():
    from scenekv.vlm import nearest_frame_pts

    sess = session("pool:4")
    sess.append(frames(4, start=10.0, step=1.5))  # 10.0, 11.5, 13.0, 14.5
    chunk = sess.export(0, 3)
    assert nearest_frame_pts([chunk], 12.9) == 11.5  # the frame shown at 12.9, not the nearer 13.0
    assert nearest_frame_pts([chunk], 13.0) == 13.0
    assert nearest_frame_pts([chunk], 99.0) == 14.5
    assert nearest_frame_pts([chunk], 2.0) == 10.0  # before the first frame: the first one
    assert nearest_frame_pts([], 2.0) is None
