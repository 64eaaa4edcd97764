"""Places for open streams, by kind, kept in Redis: full is a clear refusal, a place given back is free
again, two gateways of one pool share the caps, and only a dead holder's idle places are others' to
release."""

from __future__ import annotations

import threading
import time

import pytest

from scenekv.workers.stream_caps import StreamCaps, StreamSlots, TooManyStreams


@pytest.fixture
def slots_of(redis_client, prefix):
    """``slots_of(pool, caps)``: a StreamSlots (one service's), closed after the test."""
    made = []

    def make(pool: str, caps: StreamCaps | None = None) -> StreamSlots:
        made.append(StreamSlots(redis_client, prefix, pool, caps))
        return made[-1]

    yield make
    for slots in made:
        slots.close()


def test_each_kind_has_its_own_cap_and_places_come_back(slots_of):
    slots = slots_of("pool1", StreamCaps(push=2, file=1, live=1))
    assert slots.take("a", "push") and slots.take("b", "push")
    assert not slots.take("a", "push")  # held already: no second place (and none to give back)
    with pytest.raises(TooManyStreams) as full:
        slots.take("c", "push")
    assert full.value.code == "too_many_streams" and "2 push streams" in str(full.value)
    slots.take("f", "file")  # other kinds are not affected
    slots.take("l", "live")
    assert not slots.take("f", "push")  # a stream holds one place, whatever kind is asked
    assert slots.counts() == {"push": 2, "file": 1, "live": 1} and slots.kind("f") == "file"
    slots.give_back("a")
    slots.give_back("a")  # twice: harmless
    slots.take("c", "push")
    assert slots.counts()["push"] == 2


def test_without_caps_nothing_is_refused(slots_of):  # a library user or a benchmark
    slots = slots_of("pool1")
    assert all(slots.take(f"s{i}", "push") for i in range(500)) and slots.counts()["push"] == 500


def test_gateways_of_one_pool_share_the_caps_and_other_pools_do_not(slots_of):
    caps = StreamCaps(push=5)
    gateways = [slots_of("shared", caps) for _ in range(4)]
    taken, start = [], threading.Barrier(20)

    def start_one(i: int) -> None:
        start.wait()
        try:
            gateways[i % 4].take(f"s{i}", "push")
            taken.append(i)
        except TooManyStreams:
            pass

    threads = [threading.Thread(target=start_one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 5 and all(g.counts()["push"] == 5 for g in gateways)
    other = slots_of("another", caps)  # another deployment's pool
    assert other.take("x", "push") and other.counts()["push"] == 1


def test_a_dead_holders_idle_places_are_adopted_once_and_a_live_holders_never(redis_client, prefix, slots_of):
    a, b, c = slots_of("p"), slots_of("p"), slots_of("p")
    a.take("kept", "push")
    a.take("left", "push")
    now = time.time()
    assert b.orphans(now + 600) == []  # a holds both and is alive: never others' to release
    assert b.take("kept", "push") is False and a.holds("kept")  # attached through b: a still holds it
    a.close()  # a stops (or dies: its liveness key expires ALIVE_S after its last beat)
    assert b.holder_of("kept") == (a.holder, False)
    assert b.take("kept", "push") is False and b.holds("kept")  # attached after a died: b's now
    assert b.orphans(now - 600) == []  # used just now: not yet
    later = now + 900
    assert b.orphans(later - 600) == ["left"]  # b holds "kept" and is alive
    b.touch({"left": later})  # used since (a client on b)
    assert b.orphans(later - 600) == [] and b.last_used("left") == pytest.approx(later, abs=0.01)
    b.touch({"left": now})  # an older clock never takes it back
    assert b.last_used("left") == pytest.approx(later, abs=0.01)
    even_later = later + 900
    assert b.adopt("left", even_later - 600) and not c.adopt("left", even_later - 600)  # one of them
    assert b.holds("left") and c.orphans(even_later - 600) == []  # b, alive, holds it now
    b.give_back("left")
    b.touch({"left": even_later})  # a given-back stream gets no record from a late touch
    assert b.last_used("left") is None and b.kind("left") is None and not c.adopt("left", even_later)
    assert 0 < redis_client.ttl(f"{prefix}{{pool:p}}:push") <= 86400  # a dead pool's records expire
    assert redis_client.pttl(b.alive_key(b.holder)) > 0
    b.close()
    assert not redis_client.exists(b.alive_key(b.holder))  # stopped: its places are others' now
