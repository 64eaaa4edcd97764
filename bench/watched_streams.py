"""How many watched streams one gateway holds: N push streams, each with a subscriber in the
gateway's StreamRegistry (web/streams.py), their event logs read by its one reader
(memory/event_feed.py, one blocking XREAD on redis.asyncio) and their progress awaited from Ray.

Reports the process's threads once all N are watched (against before), and the delay from an
event's XADD to its delivery to the subscriber, p50/p99, for one event written to every stream.
The streams are real (a SceneKVService with the tiny model, real Redis); the events are
synthesised "scene.captioned" entries (MemoryStore.add_event): no model closes these scenes.

    python bench/watched_streams.py [--streams 100,1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import threading
import time
import uuid

from scenekv.web.metrics import GatewayMetrics
from scenekv.web.streams import StreamRegistry
from scenekv.workers.service import SceneKVService


class Probe:
    """A subscriber that notes when each scene's caption reached it."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}

    def deliver(self, message: str) -> None:
        msg = json.loads(message)
        if msg.get("type") == "scene.closed" and msg.get("caption"):
            self.arrived.setdefault(int(msg["scene_id"]), time.perf_counter())


async def run(service: SceneKVService, n: int, rounds: int) -> dict:
    registry = StreamRegistry(service, GatewayMetrics(), progress_interval_s=1.0)
    t0 = time.perf_counter()
    sids = await asyncio.gather(*(service.start_stream("push") for _ in range(n)))
    sids = [info.stream_id for info in sids]
    opened_s = time.perf_counter() - t0
    threads_before = threading.active_count()
    probes = {sid: Probe() for sid in sids}
    t0 = time.perf_counter()
    for sid in sids:
        await registry.subscribe(sid, probes[sid], push=True, last_pts=None, fresh=True)
    subscribed_s = time.perf_counter() - t0
    await asyncio.sleep(2.0)  # every stream's progress task has run at least once
    threads_watching = threading.active_count()
    delays = []
    for r in range(rounds):
        sent = {}
        for sid in sids:  # from a thread, as another process (an encoder) would write them
            sent[sid] = time.perf_counter()  # before the XADD: delivery may beat this await's return
            await asyncio.to_thread(
                service.store.add_event, sid, "scene.captioned", {"scene": r, "caption": "x"}
            )
        deadline = time.perf_counter() + 30
        while any(r not in p.arrived for p in probes.values()) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        delays += [probes[s].arrived[r] - sent[s] for s in sids if r in probes[s].arrived]
    lost = rounds * n - len(delays)
    for sid in sids:
        registry.unsubscribe(registry.streams[sid], probes[sid])
    await registry.close()
    for sid in sids:
        await service.end_stream(sid)
    delays.sort()
    return {
        "streams": n,
        "open_s": round(opened_s, 1),
        "subscribe_s": round(subscribed_s, 2),
        "threads_before": threads_before,
        "threads_watching": threads_watching,
        "p50_ms": round(1000 * statistics.median(delays), 1) if delays else None,
        "p99_ms": round(1000 * delays[int(0.99 * (len(delays) - 1))], 1) if delays else None,
        "lost": lost,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="100,1000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redis-url", default=None)
    args = ap.parse_args()
    service = SceneKVService(
        model="tiny-random-llava-onevision",
        redis_url=args.redis_url,
        prefix=f"skvbench:{uuid.uuid4().hex[:8]}:",
        captions=False,
        worker_logs=False,
    )
    loop = asyncio.new_event_loop()  # one loop for all runs: the service's locks and refs live on it
    try:
        print(f"machine: {platform.machine()}, {threading.active_count()} threads at start")
        print(
            "| watched streams | open (s) | subscribe (s) | threads before | threads watching "
            "| event p50 (ms) | p99 (ms) | lost |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for n in [int(x) for x in args.streams.split(",")]:
            row = loop.run_until_complete(run(service, n, args.rounds))
            print("| " + " | ".join(str(row[k]) for k in row) + " |", flush=True)
    finally:
        loop.run_until_complete(service.shutdown())
        loop.close()


if __name__ == "__main__":
    main()
