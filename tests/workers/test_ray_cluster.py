"""A real two-node Ray cluster on this machine (`ray start --head` plus `ray start --address`, both
from this venv): two encoders on different nodes, new streams spread over both, and a SIGKILLed
encoder's streams carried on by the other with every frame they had."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from scenekv.workers.blocking_service import BlockingService
from scenekv.workers.results import AnswerDone

from support.redis_fixtures import drop_prefix

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_node(*args: str, log: Path) -> subprocess.Popen:
    """`ray start ... --block` in its own process group: stopping the group stops that node only
    (`ray stop` would stop every Ray on the machine)."""
    return subprocess.Popen(
        [str(RAY), "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=_env(),
    )


def _env() -> dict:
    """This process's environment without the address of a Ray it ran before (ray.init leaves
    RAY_ADDRESS set: nodes and workers that inherit it try to reach that dead cluster). Auth off:
    Ray 2.60's `ray start` turns token auth on when ~/.ray/auth_token exists, and a driver (auth
    off by default) is then refused; a loopback test cluster goes without, as Ray allows."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    tests = str(Path(__file__).resolve().parents[1])  # the scenario, run as a script, imports support/
    path = os.pathsep.join(p for p in (tests, env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not RAY.exists() or shutil.which(str(RAY)) is None:
        pytest.skip(f"`ray start` is unavailable: no {RAY} next to this Python")
    logs = tmp_path_factory.mktemp("ray")
    # a temp dir of its own: the head writes its address file there, not in /tmp/ray, where every
    # later ray.init() of this machine would find it and try to join this (by then stopped) cluster
    temp = tempfile.mkdtemp(prefix="skvray", dir="/tmp")  # short: Ray's socket paths must fit
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = _ray_node(
        "--head",
        f"--port={port}",
        f"--temp-dir={temp}",
        "--num-cpus=2",
        "--include-dashboard=false",
        log=logs / "h",
    )
    nodes = [head]
    try:
        deadline = time.monotonic() + 90
        while subprocess.run([str(RAY), "status", f"--address={address}"], capture_output=True).returncode:
            assert head.poll() is None and time.monotonic() < deadline, (logs / "h").read_text()[-3000:]
            time.sleep(1)
        nodes.append(_ray_node(f"--address={address}", "--num-cpus=2", log=logs / "w"))
        deadline = time.monotonic() + 90
        while _alive_nodes(address) < 2:
            assert nodes[1].poll() is None and time.monotonic() < deadline, (logs / "w").read_text()[-3000:]
            time.sleep(1)
        yield address
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _alive_nodes(address: str) -> int:
    out = subprocess.run([str(RAY), "status", f"--address={address}"], capture_output=True, text=True)
    return out.stdout.count("node_") if out.returncode == 0 else 0


def test_two_encoders_on_two_nodes_share_the_streams_and_a_killed_one_hands_them_over(cluster, redis_url):
    """The gateway is a process of its own, as in a deployment (and because a driver that ran a
    local Ray before cannot be trusted to join a cluster cleanly in the same process)."""
    out = subprocess.run(
        [sys.executable, __file__, cluster, redis_url],
        capture_output=True,
        text=True,
        timeout=400,
        env=_env(),
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
