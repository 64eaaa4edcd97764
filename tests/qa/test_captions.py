"""Caption files as a user's player or tool reads them: parsed back with real WebVTT/SRT parsers."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import pytest
import srt
import webvtt

from scenekv.errors import UserError
from scenekv.qa.captions import (
    PLACEHOLDER,
    Cue,
    cues_from_scenes,
    normalize_cues,
    output_path,
    srt_timestamp,
    vtt_timestamp,
    write_captions,
    write_jsonl,
    write_srt,
    write_vtt,
)

# Hours past 1 (and past 99), non-ASCII, markup-like text, a blank line inside a caption.
CUES = [
    Cue(0.0, 4.25, "A person enters the kitchen.", 0),
    Cue(4.25, 9.001, "Café — naïve 日本語 🎬", 1),
    Cue(3723.456, 3725.0, "x --> y & <b>bold</b> a<b", 2),
    Cue(3725.0, 3790.5, "first line\n\n\nsecond line", 3),
    Cue(360_000.0, 360_001.999, "hour one hundred", 4),
]
# What a viewer should see for each cue (blank lines collapsed, text otherwise verbatim).
SHOWN = [
    "A person enters the kitchen.",
    "Café — naïve 日本語 🎬",
    "x --> y & <b>bold</b> a<b",
    "first line\nsecond line",
    "hour one hundred",
]
TIMES_MS = [(0, 4250), (4250, 9001), (3723456, 3725000), (3725000, 3790500), (360000000, 360001999)]


def _vtt_ms(ts) -> int:
    return ts.in_milliseconds()


def _td_ms(td) -> int:
    return round(td.total_seconds() * 1000)


def test_vtt_round_trips_times_and_text_through_webvtt_py(tmp_path):
    path = tmp_path / "clip.vtt"
    write_vtt(CUES, path)
    raw = path.read_text(encoding="utf-8")
    assert raw.startswith("WEBVTT\n")
    captions = list(webvtt.read(str(path)))
    assert [(_vtt_ms(c.start_time), _vtt_ms(c.end_time)) for c in captions] == TIMES_MS
    assert [html.unescape(c.raw_text) for c in captions] == SHOWN
    # markup in a caption is shown literally, never interpreted as tags or as a timing line
    assert captions[2].raw_text == "x --&gt; y &amp; &lt;b&gt;bold&lt;/b&gt; a&lt;b"
    assert captions[2].text == captions[2].raw_text  # the parser found no tags to strip
    assert raw.count("-->") == len(CUES)
    assert [c.identifier for c in captions] == [f"scene-{i}" for i in range(5)]


def test_vtt_timestamps_have_hours_and_millisecond_dot():
    assert vtt_timestamp(0) == "00:00:00.000"
    assert vtt_timestamp(3723.456) == "01:02:03.456"
    assert vtt_timestamp(360_000.0) == "100:00:00.000"
    assert vtt_timestamp(59.9996) == "00:01:00.000"  # rounding carries into minutes
    assert srt_timestamp(3723.456) == "01:02:03,456"


def test_srt_round_trips_times_numbering_and_text(tmp_path):
    path = tmp_path / "clip.srt"
    write_srt(CUES, path)
    raw = path.read_text(encoding="utf-8")
    subs = list(srt.parse(raw))
    assert [s.index for s in subs] == [1, 2, 3, 4, 5]
    assert [(_td_ms(s.start), _td_ms(s.end)) for s in subs] == TIMES_MS
    assert [s.content for s in subs] == SHOWN
    assert raw.startswith("1\n00:00:00,000 --> 00:00:04,250\n")
    assert "100:00:00,000 --> 100:00:01,999" in raw


def test_jsonl_one_object_per_scene_with_extras(tmp_path):
    path = tmp_path / "clip.jsonl"
    cues = [*CUES[:2], Cue(10.0, 12.0, "with extras", 7, {"model": "m", "evidence": [[10.0, 12.0]]})]
    write_jsonl(cues, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["scene"] for r in rows] == [0, 1, 7]
    assert rows[1] == {"scene": 1, "start": 4.25, "end": 9.001, "caption": "Café — naïve 日本語 🎬"}
    assert rows[2]["model"] == "m" and rows[2]["evidence"] == [[10.0, 12.0]]
    assert "日本語" in lines[1]  # UTF-8 as is, not \u escapes


def test_unsorted_overlapping_and_degenerate_cues_are_fixed(tmp_path):
    cues = [
        Cue(10.0, 20.0, "third, clamped to the next start", 2),
        Cue(0.0, 6.0, "first, overlaps the second", 0),
        Cue(5.0, 5.0, "second, zero length", 1),
        Cue(30.0, 29.0, "negative length", 3),
        Cue(15.0, 15.2, "", 4),
    ]
    path = tmp_path / "fixed.srt"
    write_captions(cues, path, "srt")
    subs = list(srt.parse(path.read_text(encoding="utf-8")))
    spans = [(_td_ms(s.start), _td_ms(s.end)) for s in subs]
    assert spans == [(0, 5000), (5000, 5500), (10000, 15000), (15000, 15200), (30000, 30500)]
    assert all(a < b for a, b in spans)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
    assert subs[3].content == PLACEHOLDER


def test_same_start_and_bad_times_are_rejected_with_the_scene_named():
    with pytest.raises(ValueError, match="scenes 1 and 2 both start at 3.000 s"):
        normalize_cues([Cue(3.0, 4.0, "a", 1), Cue(3.0, 5.0, "b", 2)])
    with pytest.raises(ValueError, match="scene 5: start time -1"):
        normalize_cues([Cue(-1.0, 4.0, "a", 5)])
    with pytest.raises(ValueError, match="scene 6: end time nan"):
        normalize_cues([Cue(1.0, float("nan"), "a", 6)])


def test_write_captions_by_format_name_and_unknown_format(tmp_path):
    for fmt in ("vtt", "WebVTT", ".srt", "jsonl", "json"):
        path = write_captions(CUES[:1], tmp_path / f"a-{fmt.strip('.')}", fmt)
        assert path.read_text(encoding="utf-8").strip()
    with pytest.raises(UserError, match="unknown caption format 'ass'"):
        write_captions(CUES, tmp_path / "x.ass", "ass")
    assert output_path(tmp_path, "/videos/match 1.mp4", "webvtt") == tmp_path / "match 1.vtt"


def test_failed_write_leaves_the_previous_file_and_no_temp_files(tmp_path):
    path = tmp_path / "clip.jsonl"
    write_jsonl(CUES[:1], path)
    before = path.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        write_jsonl([*CUES[:2], Cue(20.0, 21.0, "x", 9, {"bad": object()})], path)
    assert path.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.jsonl"]


def test_written_file_has_ordinary_permissions(tmp_path):
    path = tmp_path / "clip.vtt"
    write_vtt(CUES, path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_writes_to_an_open_text_file(tmp_path):
    with open(tmp_path / "clip.vtt", "w", encoding="utf-8") as f:
        write_vtt(CUES, f)
    assert len(webvtt.from_string(Path(tmp_path / "clip.vtt").read_text(encoding="utf-8")).captions) == 5


def test_cues_from_stored_scenes_close_an_open_last_scene():
    class Scene:
        def __init__(self, index, start, end, caption):
            self.index, self.start, self.end, self.caption = index, start, end, caption

    cues = cues_from_scenes([Scene(0, 0.0, 8.0, "a"), Scene(1, 8.0, None, "")], video_end=12.0)
    assert [(c.start, c.end, c.scene) for c in cues] == [(0.0, 8.0, 0), (8.0, 12.0, 1)]
    assert normalize_cues(cues)[1].text == PLACEHOLDER
