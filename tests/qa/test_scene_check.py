"""`When` answered scene by scene (qa/scene_check.py): which frames a check reads, and the answer."""

from __future__ import annotations

import pytest

from scenekv.qa.context import ChunkRef
from scenekv.qa.scene_check import (
    appearances,
    check_frames,
    check_indices,
    matches,
    named_in,
    scene_spans,
)
from scenekv.qa.when_reads import when_text

from support.kv_chunks import PER_FRAME, chunk, ref


def test_a_check_reads_frames_spread_over_the_scene_clear_of_its_cuts():
    assert check_indices(10) == [1, 5, 8]
    assert check_indices(3) == [0, 1, 2]
    assert check_indices(1) == [0]
    # a 12 s scene in two chunks (0-7, 8-11), then the next scene from 12 s: the check reads
    # frames inside the first scene only, none at either cut
    a, b, c = chunk(0.0, 8), chunk(8.0, 4), chunk(12.0, 8)
    refs = [ref("a", a), ref("b", b), ref("c", c)]
    spans = scene_spans([0.0, 12.0], refs, end=19.0)
    assert [(sp.start, sp.end) for sp in spans] == [(0.0, 12.0), (12.0, 19.0)]
    loaded = {"a": a, "b": b, "c": c}
    first = [f.first_pts for f in check_frames(spans[0], loaded)]
    assert len(first) == 3 and all(0.0 < p < 11.0 for p in first)
    assert all(f.tokens == PER_FRAME for f in check_frames(spans[0], loaded))
    # the open scene reads up to the newest frame
    last = [f.first_pts for f in check_frames(spans[1], loaded)]
    assert all(12.0 <= p <= 19.0 for p in last) and len(last) == 3


def test_a_window_and_retention_narrow_the_scenes_checked():
    a, c = chunk(12.0, 8), chunk(30.0, 8)
    refs = [ref("a", a), ref("c", c)]
    # in the window 25-37 s: the scene from 20 s overlaps it but no chunk holds it any more
    # (retention), the one from 12 s ends before it
    spans = scene_spans([0.0, 12.0, 20.0, 30.0], refs, end=37.0, window=(25.0, 37.0))
    assert [sp.start for sp in spans] == [30.0]
    spans = scene_spans([0.0, 12.0, 30.0], refs, end=37.0)  # nothing holds the scene from 0 s
    assert [sp.start for sp in spans] == [12.0, 30.0]
    best = scene_spans([12.0, 30.0], refs, end=37.0, scores={"a": 0.1, "c": 0.9}, max_scenes=1)
    assert [sp.start for sp in best] == [30.0]


def test_adjacent_matching_scenes_are_one_appearance_and_nothing_is_never():
    refs = [ChunkRef(f"c{i}", 10.0 * i, 10.0 * i + 9, 40, 10) for i in range(5)]
    spans = scene_spans([0.0, 10.0, 20.0, 30.0, 40.0], refs, end=49.0)
    runs = appearances(spans, [False, True, True, False, True])
    assert [(r.start, r.end) for r in runs] == [(10.0, 30.0), (40.0, 49.0)]
    assert when_text(runs) == "at 00:10, 00:40"
    assert when_text(appearances(spans, [False] * 5)) == "never"
    assert when_text(runs, limit=1) == "at 00:10 and 1 more time"  # never cut short silently
    # a scene between two matches that is not checked (retention dropped it) keeps them apart
    gapped = [spans[0], spans[2]]
    assert [(r.start, r.end) for r in appearances(gapped, [True, True])] == [(0.0, 10.0), (20.0, 30.0)]


def test_a_windowed_when_reads_and_reports_only_the_window():
    refs = [ChunkRef(f"c{i}", 10.0 * i, 10.0 * i + 9, 40, 10) for i in range(6)]
    spans = scene_spans([0.0, 20.0, 40.0], refs, end=59.0, window=(30.0, 59.0))
    # the scene from 20 s runs into the window: it is read and reported from 30 s; the one that
    # ended before it is not read
    assert [(sp.start, sp.end) for sp in spans] == [(30.0, 40.0), (40.0, 59.0)]


def test_a_scene_matches_when_the_question_names_what_the_model_read_there():
    assert named_in("When did the purple triangle appear?", "purple triangle")
    assert named_in("when was the background GREEN?", "green")
    assert not named_in("When did the purple triangle appear?", "green triangle")
    assert not named_in("When did the purple triangle appear?", "nothing")
    assert not named_in("When was the background red?", "")
    assert not named_in("When did the redder square appear?", "red")  # whole words only
    assert not named_in("When did the purple circle appear?", "purple square")  # all of it, in order


def test_most_reads_decide_so_one_misread_frame_is_outvoted():
    q = "When did the black circle appear?"
    assert matches(q, ["black circle", "black square", "black circle"])
    assert not matches(q, ["black square", "black circle", "black square"])
    assert matches(q, ["black circle"]) and not matches(q, []) and not matches(q, ["black circle", "nothing"])


def test_a_scan_yields_between_reads_stops_on_cancel_and_runs_once():
    import threading

    from scenekv.qa.context import ContextPlan
    from scenekv.qa.scene_check import SceneScan

    a, b = chunk(0.0, 3), chunk(3.0, 3)
    spans = scene_spans([0.0, 3.0], [ref("a", a), ref("b", b)], end=5.0)
    frames = [check_frames(sp, {"a": a, "b": b}) for sp in spans]
    said = ["red", "red", "blue", "red", "red", "red"]  # what the model would say, frame by frame

    def scan(cancel=None):
        question, reads = "When was the background red?", iter(said)
        lock = threading.Lock()
        return SceneScan(
            spans, frames, question, lambda f: next(reads), plan=ContextPlan([]), lock=lock, cancel=cancel
        )

    done = scan()
    deltas = list(done)
    # both scenes mostly red: one appearance, from the first scene's start
    assert deltas[:-1] == [""] * 6 and deltas[-1] == done.text == "at 00:00"
    assert done.plan.evidence() == [{"start": 0.0, "end": 5.0}]
    with pytest.raises(RuntimeError, match="once"):
        list(done)
    cancel = threading.Event()
    stopped = scan(cancel)
    for _ in stopped:
        cancel.set()
    assert stopped.finish_reason == "cancelled" and stopped.text == ""
