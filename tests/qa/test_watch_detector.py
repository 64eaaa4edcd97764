"""Watches decided online, frame by frame: one hit per appearance at its first frame, a misread
frame neither makes nor splits one, the end follows, the cooldown silences, and what text matches."""

from __future__ import annotations

from scenekv.memory.content_index import Reading
from scenekv.qa.watch_detector import Ended, Started, WatchDetector, WatchMatcher, watch_terms


def _run(marks: str, detector: WatchDetector | None = None, start: float = 0.0) -> list:
    """Feed one frame a second: ``x`` shows the thing, ``.`` does not."""
    detector = detector or WatchDetector()
    out = []
    for i, c in enumerate(marks):
        out += detector.process(start + i, c == "x")
    return out


def test_one_hit_per_appearance_at_its_first_frame_then_its_end():
    assert _run("..xxxxx....xxx....") == [
        Started(2, (2, 3)),
        Ended(2, 7, (2, 6)),
        Started(11, (11, 12)),
        Ended(11, 14, (11, 13)),
    ]


def test_a_single_misread_frame_neither_makes_nor_splits_an_appearance():
    assert _run("..x...xxxx.xx.xxx.....x..") == [Started(6, (6, 7)), Ended(6, 17, (6, 16))]


def test_a_frame_read_again_is_ignored_and_the_stream_end_closes_an_open_appearance():
    d = WatchDetector()
    assert _run("..xxx", d) == [Started(2, (2, 3))]
    assert d.process(3.0, False) == []  # re-read after a restart: not a new frame
    assert d.finish(1.0) == [Ended(2, 5.0, (2, 4))]
    assert d.finish(1.0) == []


def test_the_cooldown_silences_an_appearance_soon_after_the_last_and_its_end():
    d = WatchDetector(cooldown_s=10.0)
    assert _run("xxx....xx....", d) == [
        Started(0, (0, 1)),
        Ended(0, 3, (0, 2)),
        Started(7, (7, 8), quiet=True),  # 4 s after the last one's end: kept, not told
        Ended(7, 9, (7, 8), quiet=True),
    ]
    # the silenced one (7-8) ended at 9: 20 is 11 s later
    assert _run("xx...", d, start=20.0) == [Started(20, (20, 21)), Ended(20, 22, (20, 21))]


def test_a_restored_detector_continues_the_open_appearance():
    d = WatchDetector(open_start=2.0)
    assert _run("xx...", d, start=10.0) == [Ended(2.0, 12.0, (2.0, 11.0))]


def test_what_a_watch_text_matches():
    red_square = WatchMatcher.of("a red square")
    assert watch_terms("When a red square appears") == ["red", "square"]
    assert red_square.reading(Reading(0, "red square", "blue"))
    assert not red_square.reading(Reading(0, "red circle", "blue"))
    assert WatchMatcher.of("square").reading(Reading(0, "red square", "blue"))
    background = WatchMatcher.of("purple background")
    assert background.reading(Reading(0, "red square", "purple"))
    assert not background.reading(Reading(0, "purple square", "blue"))
    assert WatchMatcher.of("truck").caption("A white truck arrives at the gate.")
    assert not WatchMatcher.of("the").reading(Reading(0, "the", "the"))  # names nothing
