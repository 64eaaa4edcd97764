"""Places for open streams, by kind: full is a clear refusal, and a place given back is free again."""

from __future__ import annotations

import threading

import pytest

from scenekv.workers.stream_caps import StreamCaps, StreamSlots, TooManyStreams


def test_each_kind_has_its_own_cap_and_places_come_back():
    slots = StreamSlots(StreamCaps(push=2, file=1, live=1))
    assert slots.take("a", "push") and slots.take("b", "push")
    assert not slots.take("a", "push")  # held already: no second place (and none to give back)
    with pytest.raises(TooManyStreams) as full:
        slots.take("c", "push")
    assert full.value.code == "too_many_streams" and "2 push streams" in str(full.value)
    slots.take("f", "file")  # other kinds are not affected
    slots.take("l", "live")
    assert slots.counts() == {"push": 2, "file": 1, "live": 1} and slots.kind("f") == "file"
    slots.give_back("a")
    slots.give_back("a")  # twice: harmless
    slots.take("c", "push")
    assert slots.counts()["push"] == 2


def test_without_caps_nothing_is_refused():  # a library user or a benchmark: serve sets caps
    slots = StreamSlots()
    assert all(slots.take(f"s{i}", "push") for i in range(500)) and slots.counts()["push"] == 500


def test_concurrent_starts_never_exceed_the_cap():
    slots = StreamSlots(StreamCaps(push=5))
    taken, start = [], threading.Barrier(20)

    def start_one(i: int) -> None:
        start.wait()
        try:
            slots.take(f"s{i}", "push")
            taken.append(i)
        except TooManyStreams:
            pass

    threads = [threading.Thread(target=start_one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 5 and slots.counts()["push"] == 5
