"""The content index in Redis: idempotent entries, label lookups with ranks, kept through compaction,
trimmed with what the caps drop, refreshed and dropped with the stream, counted by `memory info`."""

from __future__ import annotations

import pytest

from scenekv.memory import MemoryStore, Reading, Retention
from scenekv.memory.content_index import label_of

from support.redis_fixtures import keys_under, memory_info


@pytest.fixture
def sid(store: MemoryStore) -> str:
    return store.create_stream(source="test", model="m", fps=1.0)


def _read(store: MemoryStore, sid: str, objects: str, background: str = "yellow", start: float = 0.0):
    """One reading a frame, 1 s apart: ``objects`` spells them, ``G`` a green circle, ``.`` nothing."""
    names = {"G": "green circle", "R": "red square", ".": "nothing"}
    for i, c in enumerate(objects):
        store.put_reading(sid, Reading(start + i, names[c], background))


def test_labels_are_normalised_words_of_a_kind():
    assert label_of("obj", "Green circle.") == "obj:green_circle"
    assert label_of("bg", "  ") == ""
    assert Reading(1.0, "red square", "blue").labels == ["obj:red_square", "bg:blue"]


def test_a_frame_read_again_replaces_its_entry_and_labels_are_looked_up_not_scanned(store, sid):
    _read(store, sid, "..GG.G")
    assert store.put_reading(sid, Reading(2.0, "green circle", "yellow")) is False  # the same: nothing
    assert store.put_reading(sid, Reading(4.0, "red square", "yellow")) is True  # re-read: replaced
    assert [r.object for r in store.readings(sid)] == ["nothing"] * 2 + ["green circle"] * 2 + [
        "red square",
        "green circle",
    ]
    assert store.index_labels(sid) == {
        "obj:nothing": 2,
        "obj:green_circle": 3,
        "obj:red_square": 1,
        "bg:yellow": 6,
    }
    assert store.index_times(sid, "obj:green_circle") == [2.0, 3.0, 5.0]
    assert store.index_times(sid, "obj:green_circle", 2.5, 10) == [3.0, 5.0]
    assert store.read_through(sid) == 5.0
    hits = store.label_hits(sid, ["obj:green_circle", "obj:red_square"], 0, 5)
    assert hits.entries == 6
    assert [(h.pts, h.rank, h.next_pts) for h in hits.hits] == [
        (2.0, 2, 3.0),
        (3.0, 3, 4.0),
        (4.0, 4, 5.0),
        (5.0, 5, None),
    ]
    assert store.label_hits(sid, ["obj:white_circle"], 0, 5).hits == []


def test_caption_words_are_indexed_at_the_scene_start(store, sid):
    store.put_caption_words(sid, 12.5, "A purple triangle on a green background.")
    assert store.index_times(sid, "word:triangle") == [12.5]
    assert "word:a" not in store.index_labels(sid)  # stopwords are left out
    store.put_caption_words(sid, 12.5, "A red square.")  # captioned again: the old words go
    assert store.index_times(sid, "word:triangle") == [] and store.index_times(sid, "word:square") == [12.5]
    assert store.read_through(sid) is None  # caption words are not frame readings


def test_the_index_is_refreshed_counted_trimmed_and_dropped_with_the_stream(
    store, sid, redis_client, redis_url, prefix
):
    _read(store, sid, "GG..RR")
    store.put_caption_words(sid, 0.0, "green circle")
    k = store.keys(sid)
    redis_client.persist(k.label("obj:red_square"))
    assert store.touch(sid)
    assert redis_client.pttl(k.label("obj:red_square")) > 0 and redis_client.pttl(k.readings) > 0
    info = memory_info(sid, redis_url, prefix)["content_index"]
    assert info["readings"] == 6 and info["caption_entries"] == 1 and info["labels"] == 6
    assert info["bytes"] > 0
    assert store.trim_index(sid, 2.0) == 3  # two readings and the caption entry before 2 s
    assert store.index_times(sid, "obj:green_circle") == []
    assert "obj:green_circle" not in store.index_labels(sid)
    assert store.index_times(sid, "obj:red_square") == [4.0, 5.0]
    store.delete_stream(sid)
    assert keys_under(redis_client, prefix) == set()


def test_compaction_keeps_the_readings_of_a_compacted_scene_and_the_cap_trims_dropped_ones(store):
    """Readings are kept by pts, not by chunk: compacting a scene (one chunk left of three) keeps every
    frame's reading; a scene the age cap drops loses them."""
    import numpy as np

    from scenekv.memory import RollingConfig, RollingMemory
    from scenekv.vlm import load_backend

    colours = [(220, 40, 40), (40, 180, 70), (40, 80, 220), (240, 210, 40), (240, 240, 240)]
    video = [(float(i), np.full((96, 128, 3), colours[i // 6], np.uint8)) for i in range(30)]
    policy = Retention(keep_s=4.0, max_s=16.0)
    config = RollingConfig(window=6, chunk_frames=2, retention=policy)
    mem = RollingMemory.create(store, load_backend("scenekv-world"), carriers="pool:4", config=config)
    sid = mem.sid
    for i in range(0, 18, 6):
        mem.append(video[i : i + 6])
        for pts, _ in video[i : i + 6]:
            store.put_reading(sid, Reading(pts, "nothing", "red"))
        mem.flush()
    scenes = store.scenes(sid)
    assert scenes[0].compacted and len(scenes[0].chunks) == 1, scenes  # 0-6 s: one chunk of three left
    assert [r.pts for r in store.readings(sid)] == [v[0] for v in video[:18]]  # every frame's reading
    for i in range(18, 30, 6):
        mem.append(video[i : i + 6])
        for pts, _ in video[i : i + 6]:
            store.put_reading(sid, Reading(pts, "nothing", "red"))
        mem.flush()
    first = store.scenes(sid)[0]
    assert first.start > 0.0 and first.compacted  # the age cap dropped the oldest scene ...
    assert store.readings(sid)[0].pts == first.start  # ... and its readings; a compacted one keeps all
    mem.end()
