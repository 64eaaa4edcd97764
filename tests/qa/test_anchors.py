"""Time anchors in the many ways users write them."""

from __future__ import annotations

import pytest

from scenekv.qa.anchors import (
    AT_PAD_S,
    AnchorError,
    AnchorInFuture,
    TimeAnchor,
    anchor_from_fields,
    anchor_from_text,
    parse_timestamp,
    resolve_anchor,
)
from scenekv.units import clock


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (83, 83.0),
        (83.5, 83.5),
        ("83", 83.0),
        ("1:23", 83.0),
        ("01:23", 83.0),
        ("1:02:03", 3723.0),
        ("00:00:07.5", 7.5),
        ("1h2m3s", 3723.0),
        ("90s", 90.0),
        ("2m", 120.0),
        (" 2m 30s ", 150.0),
    ],
)
def test_timestamps(text, seconds):
    assert parse_timestamp(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "soon", "1:75", "-3", "1:2:3:4", "nan", True, "12x"])
def test_bad_timestamps_are_refused_with_a_hint(bad):
    with pytest.raises(AnchorError):
        parse_timestamp(bad)


@pytest.mark.parametrize(
    ("question", "kind", "window_at_now_600"),
    [
        ("What happened at 1:23?", "at", (83 - AT_PAD_S, 83 + AT_PAD_S)),
        ("what is on screen at 01:23", "at", (83 - AT_PAD_S, 83 + AT_PAD_S)),
        ("who enters around 2m10s?", "at", (130 - AT_PAD_S, 130 + AT_PAD_S)),
        ("describe 0:05", "at", (5 - AT_PAD_S, 5 + AT_PAD_S)),
        ("What happened at 90 seconds?", "at", (90 - AT_PAD_S, 90 + AT_PAD_S)),
        ("summarise between 2:00 and 2:30", "range", (120, 150)),
        ("what happens from 1:00 to 1:30?", "range", (60, 90)),
        ("between 30s and 10s", "range", (10, 30)),
        ("What happened in the last 30 seconds?", "last", (570, 600)),
        ("anything in the past 2 minutes?", "last", (480, 600)),
        ("what changed in the last minute", "last", (540, 600)),
        ("in the last few seconds", "last", (597, 600)),
        ("What was shown at the start?", "range", (0, 10)),
        ("what happens at the beginning", "range", (0, 10)),
        ("what is happening right now?", "last", (590, 600)),
    ],
)
def test_anchors_in_words(question, kind, window_at_now_600):
    anchor = anchor_from_text(question)
    assert anchor is not None and anchor.kind == kind
    assert anchor.window(600.0) == pytest.approx(window_at_now_600)


@pytest.mark.parametrize(
    "question",
    [
        "what is the person holding?",
        "describe the video",
        "how many cars in 3D?",
        "is anyone by 3 men?",
        "who is at 2 stations?",
        "at 5 sharp",
    ],
)
def test_questions_without_time_have_no_anchor(question):
    assert anchor_from_text(question) is None


def test_structured_fields_win_and_only_one_is_allowed():
    assert resolve_anchor("what happened at 1:23?", at="0:10") == TimeAnchor("at", start=10.0)
    assert resolve_anchor("what happened?", range_=["1:00", 90]) == TimeAnchor("range", start=60.0, end=90.0)
    assert resolve_anchor("x", last=30).window(100.0) == (70.0, 100.0)
    with pytest.raises(AnchorError, match="one time anchor"):
        anchor_from_fields(at=3, last=5)
    with pytest.raises(AnchorError, match="before its start"):
        anchor_from_fields(range_=[20, 10])
    with pytest.raises(AnchorError, match=r"\[start, end\]"):
        anchor_from_fields(range_=[1])
    with pytest.raises(AnchorError, match="more than 0"):
        anchor_from_fields(last=0)


def test_future_anchor_is_refused_with_the_stream_time():
    with pytest.raises(AnchorInFuture, match=r"02:00 has not happened yet \(the stream is at 01:30\)"):
        TimeAnchor("at", start=120.0).check_reached(90.0)
    with pytest.raises(AnchorInFuture, match="no frames yet"):
        TimeAnchor("range", start=10.0, end=15.0).check_reached(None)
    with pytest.raises(AnchorInFuture, match="00:40 has not happened yet"):
        TimeAnchor("range", start=40.0, end=50.0).check_reached(30.0)
    # a range that has begun is answered from what exists: its window ends at the newest frame
    started = anchor_from_text("what happens at the start?")
    started.check_reached(6.0)
    assert started.window(6.0) == (0.0, 6.0)
    assert TimeAnchor("range", start=120, end=150).window(135.0) == (120, 135.0)
    TimeAnchor("at", start=90.0).check_reached(90.0)
    TimeAnchor("last", seconds=30.0).check_reached(5.0)  # "last" never lies in the future
    assert AnchorInFuture("x").code == "anchor_in_future"


def test_stream_times_are_written_as_a_clock():
    """Anchors' messages carry tenths; prompts whole seconds, as the world model was trained on."""
    tenths = [clock(s, tenths=True) for s in (0, 7.5, 83, 3723, 82.97)]
    assert tenths == ["00:00", "00:07.5", "01:23", "1:02:03", "01:23"]
    whole = [clock(s) for s in (0, 341.7, 3599.9999999, 3723, -1)]
    assert whole == ["00:00", "05:41", "1:00:00", "1:02:03", "00:00"]
    assert TimeAnchor("range", start=7.5, end=83).describe() == "00:07.5-01:23"
