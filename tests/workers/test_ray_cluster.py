"""A real two-node Ray cluster on this machine (`ray start --head` plus `ray start --address`, both
from this venv): two encoders on different nodes, new streams spread over both, and a SIGKILLed
encoder's streams carried on by the other with every frame they had."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid

import numpy as np
import pytest

from scenekv.workers.blocking_service import BlockingService
from scenekv.workers.results import AnswerDone

from support.ray_cluster import clean_env, private_cluster
from support.redis_fixtures import drop_prefix


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from private_cluster(tmp_path_factory, workers=1)


def test_two_encoders_on_two_nodes_share_the_streams_and_a_killed_one_hands_them_over(cluster, redis_url):
    """The gateway is a process of its own, as in a deployment (and because a driver that ran a
    local Ray before cannot be trusted to join a cluster cleanly in the same process)."""
    out = subprocess.run(
        [sys.executable, __file__, cluster, redis_url],
        capture_output=True,
        text=True,
        timeout=400,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-6000:]
    assert "scenario passed" in out.stdout


@contextlib.contextmanager
def _service(address: str, redis_url: str):

    pfx = f"skvtest:{uuid.uuid4().hex[:12]}:"
    svc = BlockingService(
        model="tiny-random-llava-onevision",
        redis_url=redis_url,
        prefix=pfx,
        ray_address=address,
        encoders=2,
        rolling={"window": 8, "chunk_frames": 4},
        worker_logs=False,
    )
    try:
        yield svc
    finally:
        svc.shutdown()
        drop_prefix(redis_url, pfx)


COLOURS = [(220, 40, 40), (40, 180, 70), (40, 80, 220), (240, 210, 40)]


def _frame(i: int) -> np.ndarray:
    """Scenes of 5 frames, each a flat colour of its own, with a little noise."""
    noise = np.random.default_rng(i).integers(-6, 7, (96, 128, 3))
    return np.clip(np.array(COLOURS[i // 5]) + noise, 0, 255).astype(np.uint8)


def _by_name(service) -> dict[str, dict]:
    return {e["name"]: e for e in service.encoder_stats(timeout=10)}


def scenario(service) -> None:
    before = _by_name(service)
    assert len(before) == 2 and all("error" not in e for e in before.values()), before
    assert len({e["node_id"] for e in before.values()}) == 2, "both encoders landed on one node"
    health = service.health()["encoders"]
    assert sorted(e["name"] for e in health) == sorted(before) and all(e["streams"] == 0 for e in health)

    sids = [service.start_stream("push", fps=1.0, carriers="pool:4").stream_id for _ in range(4)]
    placed = {sid: service.pool.placement.encoder_of(sid) for sid in sids}
    assert sorted(list(placed.values()).count(n) for n in before) == [2, 2], placed  # least-loaded
    for i in range(12):
        for sid in sids:
            service.push_frame(sid, float(i), _frame(i))
    assert {n: e["streams"] for n, e in _by_name(service).items()} == {n: 2 for n in before}

    victim = placed[sids[0]]
    survivor = next(n for n in before if n != victim)
    moved = [sid for sid in sids if placed[sid] == victim]
    os.kill(before[victim]["pid"], signal.SIGKILL)

    for i in range(12, 20):  # no error reaches the pusher: its frames go on on the survivor
        for sid in sids:
            service.push_frame(sid, float(i), _frame(i))
    assert all(service.pool.placement.encoder_of(sid) == survivor for sid in sids)
    after = _by_name(service)
    assert after[survivor]["pid"] == before[survivor]["pid"]  # the survivor itself never restarted
    assert after[survivor]["streams"] == 4

    starts = {}
    for sid in sids:
        service.end_stream(sid)
        info = service.store.info(sid)
        # every frame exactly once: those only the dead encoder had were replayed from the gateway
        assert info.last_pts == 19.0 and info.next_index == 20, (sid, info)
        scenes = service.scenes(sid)
        assert len(scenes) >= 2 and all(s.closed and s.caption for s in scenes), scenes
        starts[sid] = [s.start for s in scenes]
    kept = [sid for sid in sids if sid not in moved]
    assert all(starts[sid] == starts[kept[0]] for sid in sids), starts  # the same frames, the same scenes
    done = list(service.ask(moved[0], "what happened at 0:07?", max_tokens=4))[-1]
    assert isinstance(done, AnswerDone) and any(e["start"] <= 7 <= e["end"] for e in done.evidence), done


if __name__ == "__main__":
    with _service(sys.argv[1], sys.argv[2]) as svc:
        scenario(svc)
    print("scenario passed")
