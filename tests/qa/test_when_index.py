"""`when` from the content index, the pure part: which labels a question names, which stretches of
the index it reads, and appearances smoothed from read frames (one misread frame neither makes nor
splits one; an onset is a frame, not a scene cut)."""

from __future__ import annotations

import threading

from scenekv.memory.content_index import Hit, Reading
from scenekv.qa.appearances import appearances, segments
from scenekv.qa.context import ContextPlan
from scenekv.qa.when_index import CONTEXT, IndexWhen, asked_kind, named_labels, stretches

from support.kv_chunks import chunk

NAMES = {"G": "green circle", "g": "green square", "R": "red square", ".": "nothing"}


def read(objects: str, backgrounds: str | None = None, start: float = 0.0) -> list[Reading]:
    """Frames 1 s apart: ``objects`` spells what each was read as (``G`` green circle, ``g`` green
    square, ``R`` red square, ``.`` nothing), ``backgrounds`` their background (``y``/``b``)."""
    backgrounds = backgrounds or "y" * len(objects)
    colours = {"y": "yellow", "b": "blue"}
    return [
        Reading(start + i, NAMES[o], colours[b])
        for i, (o, b) in enumerate(zip(objects, backgrounds, strict=True))
    ]


def found(readings: list[Reading], thing: str = "green circle", **kwargs) -> list[tuple[float, float]]:
    return [(a.start, a.end) for a in appearances([readings], {thing}, "obj", step=1.0, **kwargs)]


def test_a_single_misread_frame_makes_no_appearance_and_splits_none():
    assert found(read("......G......")) == []  # one frame read as the thing
    assert found(read("...GGGGG.GGGG...")) == [(3.0, 13.0)]  # one frame misread inside it
    assert found(read("GGGGGGGG")) == [(0.0, 8.0)]


def test_misreads_of_a_moving_shape_are_outvoted_by_the_frames_around_them():
    """A green square read as a green circle on a few frames, two in a row at most: no circle
    appears, and the square is one appearance from its first frame."""
    moving = read(".....gggGGgggGgGGggggg.....")
    assert found(moving) == []
    assert found(moving, "green square") == [(5.0, 22.0)]


def test_an_onset_is_its_first_frame_mid_scene_and_a_new_scene_is_its_own_appearance():
    mid_scene = read("..........GGGGGGGGGG")  # same background throughout: no scene cut to go by
    assert found(mid_scene) == [(10.0, 20.0)]
    scenes = read("GGGGG.....GGGGG", "yyyyybbbbbyyyyy")  # away for a 5-frame scene: twice
    assert found(scenes) == [(0.0, 5.0), (10.0, 15.0)]
    assert [(s.object, s.background, s.frames) for s in segments(scenes, step=1.0)] == [
        ("green circle", "yellow", 5),
        ("nothing", "blue", 5),
        ("green circle", "yellow", 5),
    ]


def test_a_window_keeps_what_overlaps_it_and_starts_it_no_earlier():
    readings = read("GGGG..........GGGGGGG.........")
    assert found(readings, window=(8.0, 20.0)) == [(14.0, 21.0)]
    assert found(readings, window=(16.0, 29.0)) == [(16.0, 21.0)]  # began before it: at its start
    assert found(readings, window=(5.0, 12.0)) == []


def test_the_stretches_read_are_the_context_around_each_hit_merged():
    hits = [Hit(float(r), r, None) for r in (50, 52, 200)]
    assert stretches(hits, 1000) == [(50 - CONTEXT, 52 + CONTEXT), (200 - CONTEXT, 200 + CONTEXT)]
    assert stretches([Hit(3.0, 3, None)], 6, newest=True) == [(0, 5)]
    assert stretches([], 100, newest=True) == [(100 - 1 - CONTEXT, 99)]


def test_a_question_names_labels_of_its_kind_as_whole_words():
    labels = ["obj:green_circle", "obj:red_square", "bg:green", "bg:red", "obj:nothing"]
    assert asked_kind("When was the background green?") == "bg"
    assert asked_kind("When did the green circle appear?") == "obj"
    assert named_labels("When did the green circle appear?", labels) == ["obj:green_circle"]
    assert named_labels("When was the background green?", labels) == ["bg:green"]
    assert named_labels("When did the greenish circle appear?", labels) == []
    assert named_labels("When did the red square or the green circle appear?", labels) == [
        "obj:green_circle",
        "obj:red_square",
    ]


def test_frames_newer_than_the_index_are_read_one_per_lock_hold_and_continue_its_last_stretch():
    """The index ends with the circle on its last four frames; five frames are not read yet: the
    answer reads them (an empty delta after each) and the appearance runs on through two of them."""
    tail = chunk(7.0, 5).split_frames()
    seen = iter(["Green circle", "green circle", "nothing", "nothing", "Nothing."])
    plan = ContextPlan([])
    answer = IndexWhen(
        "When did the green circle appear?",
        [read("...GGGG")],
        {"green circle"},
        tail,
        lambda frames: next(seen),
        1.0,
        None,
        plan=plan,
        lock=threading.Lock(),
    )
    assert list(answer) == ["", "", "", "", "", "at 00:03"]
    assert plan.evidence_spans == [(3.0, 9.0)] and answer.finish_reason == "stop"
