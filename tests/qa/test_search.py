"""Search ranking (pure) and its reader over a real Redis store."""

from __future__ import annotations

import pytest

from scenekv.errors import UserError
from scenekv.memory.content_index import Reading
from scenekv.qa.search import SceneDoc, rank, search, words


def test_words_drop_stopwords_and_plurals():
    assert words("The blue Circles in a grass field") == ["blue", "circle", "grass", "field"]


def test_a_whole_label_beats_the_same_words_apart():
    docs = [
        SceneDoc("a", 0.0, 10.0, "", {"obj:red_circle": 2.0, "bg:blue": 0.0}),
        SceneDoc("a", 10.0, 20.0, "", {"obj:blue_circle": 13.0, "bg:green": 10.0}),
        SceneDoc("a", 20.0, 30.0, "", {"obj:red_square": 20.0, "bg:green": 20.0}),
    ]
    hits = rank(docs, "blue circle")
    assert [(h.start, h.end) for h in hits[:2]] == [(13.0, 20.0), (0.0, 10.0)]  # onset inside the scene
    assert all(h.start != 20.0 for h in hits)


def test_a_label_counts_whole_only_as_a_phrase_of_the_query():
    docs = [
        SceneDoc("a", 0.0, 10.0, "", {"obj:orange_square": 1.0, "bg:yellow": 0.0}),
        SceneDoc("a", 10.0, 20.0, "", {"obj:yellow_square": 12.0, "bg:orange": 10.0}),
    ]
    assert [h.start for h in rank(docs, "yellow square on orange")] == [12.0, 0.0]
    assert [h.start for h in rank(docs, "orange square on yellow")] == [1.0, 10.0]


def test_a_label_read_in_one_frame_only_ranks_below_one_read_in_several():
    docs = [
        SceneDoc("a", 0.0, 10.0, "", {"obj:black_circle": 3.0}, {"obj:black_circle": 1}),
        SceneDoc("b", 0.0, 10.0, "", {"obj:black_circle": 5.0}, {"obj:black_circle": 6}),
    ]
    assert [h.stream_id for h in rank(docs, "black circle")] == ["b", "a"]


def test_captions_rank_by_bm25_and_rare_words_weigh_more():
    docs = [
        SceneDoc("a", 0.0, 5.0, "a truck parks by the gate"),
        SceneDoc("a", 5.0, 9.0, "people walk by the gate"),
        SceneDoc("b", 0.0, 4.0, "people at a gate, people everywhere"),
    ]
    hits = rank(docs, "truck at the gate")
    assert (hits[0].stream_id, hits[0].start) == ("a", 0.0)
    assert len(hits) == 3 and rank(docs, "the of") == [] and rank(docs, "bicycle") == []
    assert len(rank(docs, "gate", limit=2)) == 2


def _stream(store, sid, scenes, readings):
    store.create_stream(sid, model="test")
    for i, (start, end, caption) in enumerate(scenes):
        store.put_scene(sid, i, start, {"end": end, "closed": "1", "caption": caption})
    for pts, obj, bg in readings:
        store.put_reading(sid, Reading(pts, obj, bg))


def test_search_over_the_store_finds_the_right_stream(store):
    _stream(store, "s1", [(0.0, 10.0, ""), (10.0, 20.0, "")], [(t, "red square", "green") for t in range(20)])
    readings = [(t, "black circle" if t >= 12 else "nothing", "yellow") for t in range(20)]
    _stream(store, "s2", [(0.0, 10.0, ""), (10.0, 20.0, "")], readings)
    hits = search(store, "black circle")
    assert hits[0].as_dict() == {"stream_id": "s2", "start": 12.0, "end": 20.0, "caption": ""}
    assert all(h.stream_id == "s2" for h in hits)
    assert search(store, "black circle", streams=["s1"]) == []
    with pytest.raises(UserError):
        search(store, "black circle", streams=["nope"])
