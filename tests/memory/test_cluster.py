"""Stream memory on a real 3-master Redis Cluster made on this machine (no mocks)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time

import pytest
import redis

from scenekv.memory import MemoryStore, Reading, Retention, RollingConfig, RollingMemory
from scenekv.qa.engine import QAEngine
from scenekv.qa.key_index import KeyIndex
from scenekv.qa.memory_view import MemoryView
from scenekv.vlm import SamplingParams

from support.tiny_model import frames, tiny


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 30000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three cluster-enabled redis-servers joined with `redis-cli --cluster create` (no replicas)."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:  # scripts/test.sh installs them; a bare machine must say so
        pytest.fail(
            "redis-server and redis-cli are needed for the cluster test (apt-get install redis-server)"
        )
    ports: list[int] = []
    while len(ports) < 3:
        port = _cluster_port()
        if all(abs(port - p) not in (0, 10000) for p in ports):
            ports.append(port)
    procs = []
    for port in ports:
        d = tmp_path_factory.mktemp(f"node{port}")
        args = [
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(d),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf")]
        procs.append(subprocess.Popen([server, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        for port in ports:
            _wait(lambda p=port: redis.Redis(port=p).ping())
        nodes = [f"127.0.0.1:{p}" for p in ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in ports:
            _wait(lambda p=port: redis.Redis(port=p).info("cluster") and _state_ok(p))
        yield ports
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def _state_ok(port: int) -> bool:
    return b"cluster_state:ok" in redis.Redis(port=port).execute_command("CLUSTER", "INFO")


def _wait(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the local Redis Cluster did not come up")
        time.sleep(0.1)


def test_a_stream_is_written_and_answered_through_a_redis_cluster(cluster):
    store = MemoryStore(f"redis+cluster://127.0.0.1:{cluster[0]}", "skvc:", ttl_s=3600)
    assert store.cluster
    policy = Retention(keep_s=6.0, max_bytes=10**6)
    mem = RollingMemory.create(
        store, tiny(), carriers="pool:4", config=RollingConfig(window=6, chunk_frames=2, retention=policy)
    )
    mem.append(frames(24, seed=5))
    mem.flush()
    for t in range(4):  # the content index's Lua steps and reads run on the stream's node too
        store.put_reading(mem.sid, Reading(float(t), "green circle" if t else "nothing", "red"))
    store.put_caption_words(mem.sid, 0.0, "a green circle")
    hits = store.label_hits(mem.sid, ["obj:green_circle"], 0.0, 10.0)
    assert [(h.pts, h.rank) for h in hits.hits] == [(1.0, 1), (2.0, 2), (3.0, 3)]
    assert [r.object for r in store.readings_by_rank(mem.sid, [(0, 1)])[0]] == ["nothing", "green circle"]
    assert store.index_usage(mem.sid).readings == 4
    # every key of the stream is in one slot: each Lua step runs on one node
    names = list(store.client.scan_iter(match=f"{store.keys(mem.sid).base}*", count=1000))
    assert len(names) > 10
    slots = {store.client.keyslot(n) for n in names}
    assert len(slots) == 1, slots
    answer = QAEngine(tiny()).ask(
        MemoryView(store, mem.sid, index=KeyIndex()),
        "What happened at 00:05?",
        params=SamplingParams(max_new_tokens=4),
    )
    list(answer)
    assert answer.evidence and answer.plan.chunks
    mem.detach()
    # a plain redis:// URL of any node is recognised as a cluster too; the stream continues there
    plain = MemoryStore(f"redis://127.0.0.1:{cluster[2]}", "skvc:", ttl_s=3600)
    assert plain.cluster
    again = RollingMemory.attach(plain, tiny(), mem.sid, config=RollingConfig(window=6, chunk_frames=2))
    again.append(frames(4, seed=6, start=30.0))
    again.end()
    assert plain.info(mem.sid).last_pts == 33.0
    assert mem.sid in plain.list_streams()
    assert plain.delete_stream(mem.sid) > 10
    assert not list(plain.client.scan_iter(match=f"{plain.keys(mem.sid).base}*"))


def test_streams_spread_over_the_cluster_nodes(cluster):
    store = MemoryStore(f"redis+cluster://127.0.0.1:{cluster[0]}", "skvc:", ttl_s=600)
    sids = [store.create_stream(source="push") for _ in range(12)]
    nodes = {store.client.get_node_from_key(store.keys(s).stream).name for s in sids}
    assert len(nodes) >= 2  # 12 random ids on 3 masters: all on one would be a (3 * 3^-12) fluke
    assert set(sids) <= set(store.list_streams())
    for sid in sids:
        store.delete_stream(sid)
    assert not set(sids) & set(store.list_streams())


def test_one_slots_events_do_not_wait_for_another_slots_read(cluster):
    """A gateway watches streams in different slots: an event on one arrives while the other
    slots' blocking reads are still waiting, not after their block runs out."""
    import asyncio

    from scenekv.memory.event_feed import EventFeed

    url = f"redis+cluster://127.0.0.1:{cluster[0]}"
    store = MemoryStore(url, "skvf:", ttl_s=600)
    sids = [store.create_stream(source="push") for _ in range(6)]
    slot = {s: store.client.keyslot(store.keys(s).events) for s in sids}
    assert len(set(slot.values())) >= 2
    other = next(s for s in sids if slot[s] != slot[sids[0]])  # its read is carried over

    async def main():
        feed = EventFeed(url, "skvf:")
        try:
            cursors = {}
            for sid in sids:  # skip what creation wrote
                backlog = await feed.backlog(sid)
                cursors[sid] = backlog[-1][1] if backlog else "0-0"
            loop = asyncio.get_running_loop()
            loop.call_later(0.3, store.add_event, sids[0], "scene.captioned", {"scene": 0, "caption": "x"})
            t0 = time.monotonic()
            events = await feed.read(cursors, block_ms=8000)
            took = time.monotonic() - t0
            assert [(sid, kind) for sid, _, kind, _ in events] == [(sids[0], "scene.captioned")]
            assert took < 4.0, took  # the other slots' 8 s reads are still in flight
            assert feed._inflight  # and stay in flight for the next read, not re-issued
            carried = set(map(id, feed._inflight.values()))
            # the next read picks up those reads; news on another stream comes through them
            cursors[sids[0]] = events[0][1]
            loop.call_later(0.3, store.add_event, other, "scene.captioned", {"scene": 1, "caption": "y"})
            t0 = time.monotonic()
            later = await feed.read(cursors, block_ms=8000)
            assert carried - set(map(id, feed._inflight.values())), "no carried read answered"
            assert [(sid, kind) for sid, _, kind, _ in later] == [(other, "scene.captioned")]
            assert time.monotonic() - t0 < 4.0
        finally:
            await feed.close()

    try:
        asyncio.run(main())
    finally:
        for sid in sids:
            store.delete_stream(sid)
