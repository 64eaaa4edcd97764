"""Carrier budgets, dedup and the --carriers grammar."""

from __future__ import annotations

import numpy as np
import pytest

from scenekv.errors import UserError
from scenekv.vlm import CarrierSpec, time_tag

from support.tiny_model import frames, session, tiny


@pytest.mark.parametrize(
    ("spec", "carriers"), [("native", 196), ("pool:16", 16), ("pool:1", 1), ("mean:1", 1), ("topk:8", 9)]
)
def test_every_kept_frame_costs_exactly_its_budget(spec, carriers):
    sess = session(spec)
    before = sess.cache.get_seq_length()
    records = sess.append(frames(3, start=10.0))
    tok = tiny().tokenizer
    for r in records:
        assert r.carriers == carriers
        assert r.kv_tokens == carriers + len(tok(time_tag(r.pts), add_special_tokens=False)["input_ids"])
    assert sess.cache.get_seq_length() - before == sum(r.kv_tokens for r in records)
    assert sess.next_position == sess.sink_len + sum(r.kv_tokens for r in records)


def test_topk_keeps_the_most_attended_tokens_plus_one_merged():
    b = tiny()
    feats = b.encode_frames([img for _, img in frames(2)], need_importance=True)
    from scenekv.vlm.carriers import compress

    out, grid = compress(CarrierSpec.parse("topk:5"), feats, b)
    assert grid is None
    assert out.shape == (2, 6, feats.tokens.shape[-1])
    for f in range(2):
        top = feats.importance[f].topk(5).indices.sort().values
        assert np.allclose(out[f, :5].numpy(), feats.tokens[f, top].numpy())
        rest = np.ones(feats.tokens.shape[1], bool)
        rest[top.numpy()] = False
        assert np.allclose(out[f, 5].numpy(), feats.tokens[f, rest].mean(0).numpy(), atol=1e-6)


def _solid(rgb, box=None) -> np.ndarray:
    img = np.zeros((96, 128, 3), np.uint8)
    img[...] = rgb
    if box:
        img[40:52, 60:72] = 255
    return img


def test_dedup_drops_repeated_frames_and_keeps_changed_ones():
    sess = session("pool:4+dedup:0.95")
    red, blue = _solid((220, 30, 30)), _solid((30, 30, 220))
    recs = sess.append([(0.0, red), (1.0, red.copy()), (2.0, _solid((220, 30, 30), box=True)), (3.0, blue)])
    assert [r.carriers for r in recs] == [4, 0, 0, 4]
    assert [r.kept_as for r in recs] == [0, 0, 0, 3]
    assert [r.position is None for r in recs] == [False, True, True, False]
    # the next batch compares against the last kept frame of the previous one
    more = sess.append([(4.0, blue.copy()), (5.0, red)])
    assert [r.carriers for r in more] == [0, 4]
    assert more[0].kept_as == 3
    assert sess.resident_frames == [0, 3, 5]


def test_without_dedup_identical_frames_are_all_kept():
    sess = session("pool:4")
    red = _solid((220, 30, 30))
    assert [r.carriers for r in sess.append([(0.0, red), (1.0, red), (2.0, red)])] == [4, 4, 4]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("native", "native"),
        ("pool:16", "pool:16"),
        ("mean:1", "mean:1"),
        ("mean", "mean:1"),
        ("topk:32", "topk:32"),
        ("pool:16+dedup:0.95", "pool:16+dedup:0.95"),
        ("dedup:0.9+native", "native+dedup:0.9"),
        (" POOL:4 ", "pool:4"),
    ],
)
def test_carrier_grammar_round_trips(text, expected):
    assert str(CarrierSpec.parse(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pool:15", "square"),
        ("pool", "square"),
        ("mean:4", "exactly one"),
        ("zip:4", "unknown carrier strategy 'zip'"),
        ("pool:16+mean:1", "only one"),
        ("pool:16+dedup:1.5", "(0, 1]"),
        ("native:196", "no count"),
        ("dedup:0.9", "name one of"),
        ("pool:-4", "expected NAME"),
    ],
)
def test_bad_carrier_strategies_get_a_clear_error(text, message):
    with pytest.raises(UserError, match=None) as err:
        CarrierSpec.parse(text)
    assert message in str(err.value)
