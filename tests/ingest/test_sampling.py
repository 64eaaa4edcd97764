"""Unit tests of the slot rule, size options and the drop-oldest queue (no media needed)."""

from __future__ import annotations

import threading
import time

import pytest

from scenekv.ingest.errors import InvalidOption
from scenekv.ingest.latest import Closed, LatestQueue
from scenekv.ingest.sampling import Resize, Sampler, parse_frame_size, quarter_turns


def kept(times, fps, origin=0.0):
    s = Sampler(fps, origin=origin)
    return [t for t in times if s.take(t)]


def test_slot_rule_keeps_first_frame_at_or_after_each_slot():
    times = [i / 25 for i in range(100)]  # 25 fps, 4 s
    assert kept(times, 1.0) == [0.0, 1.0, 2.0, 3.0]
    assert kept(times, 2.0)[:3] == [0.0, 0.52, 1.0]  # 0.48 < 0.5 <= 0.52


def test_never_two_frames_for_one_slot_and_gaps_leave_slots_empty():
    # A 3-second gap: the frame at 5.2 serves slot 3 (and 4, 5); the next kept frame is at or after 6.
    times = [0.0, 0.5, 1.0, 2.1, 5.2, 5.4, 5.9, 6.0, 6.3]
    assert kept(times, 1.0) == [0.0, 1.0, 2.1, 5.2, 6.0]


def test_non_increasing_pts_are_never_kept():
    assert kept([0.0, 1.0, 0.5, 1.0, 2.0], 1.0) == [0.0, 1.0, 2.0]
    assert kept([0.0, 0.0, 0.1, 0.1], None) == [0.0, 0.1]


def test_float_noise_does_not_move_a_frame_to_the_next_slot():
    assert kept([0.0, 0.9999997, 2.0000004], 1.0) == [0.0, 0.9999997, 2.0000004]


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf")])
def test_bad_fps_is_a_user_error(fps):
    with pytest.raises(InvalidOption, match="fps"):
        Sampler(fps)


def test_resize_max_side_keeps_aspect_and_never_enlarges():
    assert Resize(max_side=320).output(1280, 720) == (320, 180)
    assert Resize(max_side=320).output(720, 1280) == (180, 320)
    assert Resize(max_side=4000).output(1280, 720) == (1280, 720)
    assert Resize(size=(64, 64)).output(1280, 720) == (64, 64)
    with pytest.raises(InvalidOption, match="not both"):
        Resize(size=(1, 1), max_side=3)


def test_parse_size():
    assert parse_frame_size("640x360") == (640, 360)
    for bad in ("640", "x360", "0x10", "axb"):
        with pytest.raises(InvalidOption, match="WIDTHxHEIGHT"):
            parse_frame_size(bad)


def test_quarter_turns():
    assert [quarter_turns(r) for r in (0, 90, -90, 180, -180, 270, None)] == [0, 1, 3, 2, 2, 3, 0]


def test_latest_queue_drops_oldest_keeps_newest():
    q = LatestQueue(2)
    for i in range(5):
        q.put(i)
    assert q.dropped == 3
    assert [q.get()[0], q.get()[0]] == [3, 4]
    q.close()
    with pytest.raises(Closed):
        q.get()


def test_latest_queue_close_wakes_a_blocked_consumer():
    q = LatestQueue(1)
    done = []

    def consume():
        try:
            q.get()
        except Closed:
            done.append(True)

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.1)
    q.close()
    t.join(2)
    assert done == [True]
    with pytest.raises(TimeoutError):
        LatestQueue(1).get(timeout=0.05)
