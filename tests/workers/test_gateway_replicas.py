"""Two `scenekv serve` processes over one encoder pool on a private Ray cluster, one Redis.

Both gateways start at once with no pool running: they end up on one encoder. A camera pushes a
world video through gateway A with a watch added there; a second client watches
the stream through gateway B. A is SIGKILLed mid-stream: the camera reconnects to B as the owner, is
told ``last_pts``, re-sends from there and ends the stream. Every acknowledged frame is in Redis once,
B uses the encoders A started (same pids: no second model load), a question on B about frames pushed
through A is answered, and the watch added through A fires for the client on B. A stream whose only
client was on A is released by B (its place and window are not held for ever). B stops on SIGTERM and
leaves the shared encoder running; `scenekv encoders status` shows it and `down` stops it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from websockets.sync.client import connect

from scenekv.memory import MemoryStore
from scenekv.workers.stream_caps import ALIVE_S

from support.ray_cluster import clean_env, free_port, private_cluster, stop_group
from support.redis_fixtures import drop_prefix
from support.ws_helpers import Pusher, ask, of_type, recv_until, send, world_jpegs

pytestmark = pytest.mark.slow

SEED, SECONDS, RED_AT = 11, 32, 20  # the first 32 s of the 60 s world of seed 11: purple 0-20 s, red 20-43 s
KILL_AFTER = 12  # frames acknowledged through A before it dies
TOKEN = "replica-test-token"
IDLE_S = 3.0  # both gateways: an idle stream whose holder died is released by the other after this


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from private_cluster(tmp_path_factory, workers=0)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[bytes]:
    truth, out = world_jpegs(tmp_path_factory.mktemp("replicas") / "world.mp4", SEED, 60)
    assert [(round(s.start), s.background) for s in truth.scenes][:2] == [(0, "purple"), (RED_AT, "red")]
    return out[:SECONDS]


def _gateway(
    cluster: str, redis_url: str, prefix: str, log: Path, *extra: str
) -> tuple[subprocess.Popen, str]:
    """A `scenekv serve` started in a process group of its own, and its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scenekv.cli", "serve", "--port", str(port), "--model", "scenekv-world",
         "--ray-address", cluster, "--redis-url", redis_url, "--prefix", prefix, "--token", TOKEN,
         "--drain-s", "1", "--idle-s", str(IDLE_S), *extra],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def _up(proc: subprocess.Popen, url: str, log: Path) -> None:
    """Wait until the gateway's /healthz answers."""
    deadline = time.monotonic() + 240
    while True:
        assert proc.poll() is None, f"serve exited: {log.read_text()[-3000:]}"
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2).read()
            return
        except OSError:
            assert time.monotonic() < deadline, f"serve did not come up: {log.read_text()[-3000:]}"
            time.sleep(0.5)


def _encoder_pids(url: str) -> list[int]:
    req = urllib.request.Request(url + "/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
    health = json.loads(urllib.request.urlopen(req, timeout=10).read())
    return sorted(e["pid"] for e in health["encoders"])


def _ws(url: str):
    return connect(url.replace("http", "ws", 1) + f"/ws?token={TOKEN}", open_timeout=10, max_size=None)


def test_two_gateways_share_the_encoders_and_a_killed_one_costs_its_client_a_reconnect(
    cluster, redis_url, frames, tmp_path
):
    prefix = f"skvrep{uuid.uuid4().hex[:8]}:"
    procs = []
    try:
        # both at once, neither finding a pool: one claim wins, Ray makes the encoder once
        a, url_a = _gateway(cluster, redis_url, prefix, tmp_path / "a.log", "--encoders", "1")
        b, url_b = _gateway(cluster, redis_url, prefix, tmp_path / "b.log")
        procs += [a, b]
        _up(a, url_a, tmp_path / "a.log")
        _up(b, url_b, tmp_path / "b.log")
        pids = _encoder_pids(url_a)
        assert len(pids) == 1 and _encoder_pids(url_b) == pids  # B found A's encoder: no model of its own

        camera = Pusher(_ws(url_a), frames.__getitem__)
        send(camera.conn, type="session.start", source="push", fps=1.0, carriers="pool:16")
        started = recv_until(camera.conn, of_type("session.started"), timeout=60)
        sid, key = started["stream_id"], started["stream_key"]
        send(camera.conn, type="watch.add", id="red", text="red background")
        recv_until(camera.conn, of_type("watch.added", id="red"), timeout=30)

        idler = Pusher(_ws(url_a), frames.__getitem__)  # its client stays on A until A dies
        send(idler.conn, type="session.start", source="push", fps=1.0, carriers="pool:16")
        left_sid = recv_until(idler.conn, of_type("session.started"), timeout=60)["stream_id"]
        idler.send_up_to(2)
        idler.wait_acked(1, timeout=120)

        viewer = Pusher(_ws(url_b))  # no key: a read-only attach through the other gateway
        send(viewer.conn, type="session.start", stream_id=sid)
        assert recv_until(viewer.conn, of_type("session.started"), timeout=60)["owner"] is False

        camera.send_up_to(KILL_AFTER)
        camera.wait_acked(KILL_AFTER - 1, timeout=180)
        camera.send_up_to(KILL_AFTER + 3)  # in flight when A dies: these are the client's to re-send
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(timeout=30)
        killed_at = time.monotonic()

        camera = Pusher(_ws(url_b), frames.__getitem__)
        send(camera.conn, type="session.start", stream_id=sid, stream_key=key)
        resumed = recv_until(camera.conn, of_type("session.started"), timeout=60)
        assert resumed["owner"] is True and resumed["last_pts"] >= KILL_AFTER - 1, resumed
        camera.next, camera.acked = int(resumed["last_pts"]) + 1, resumed["last_pts"]
        camera.send_up_to(SECONDS)
        camera.wait_acked(SECONDS - 1, timeout=240)

        _, done = ask(camera.conn, "q1", text="What is the background at 0:05?", max_tokens=6)
        assert done["type"] == "answer.done", done
        assert any(e["start"] <= 5 <= e["end"] for e in done["evidence"]), done

        deadline = time.monotonic() + 60  # the watch added through A, told to the client on B
        while not any(m["type"] == "watch.hit" and m["id"] == "red" for m in viewer.seen):
            assert time.monotonic() < deadline, [m["type"] for m in viewer.seen]
            viewer.pump(0.5)
        hit = next(m for m in viewer.seen if m["type"] == "watch.hit")
        assert abs(hit["start"] - RED_AT) <= 2, hit

        store = MemoryStore(redis_url, prefix)
        while store.info(left_sid).status != "ended":  # A's abandoned stream, released by B
            assert time.monotonic() - killed_at < ALIVE_S + 60, store.info(left_sid)
            time.sleep(0.5)
        # not before A's liveness expired (renewed every ALIVE_S / 3, it lasts ALIVE_S)
        assert time.monotonic() - killed_at >= ALIVE_S * 2 / 3 - 1
        assert store.info(left_sid).next_index == 2

        send(camera.conn, type="session.end")
        recv_until(camera.conn, of_type("session.ended"), timeout=120)
        info = store.info(sid)
        assert info.last_pts == SECONDS - 1 and info.next_index == SECONDS, info  # every frame, once
        assert _encoder_pids(url_b) == pids  # the encoder never restarted

        b.send_signal(signal.SIGTERM)  # drains and stops; the deployment's encoder stays
        assert b.wait(timeout=30) == 0
        status = _encoders(cluster, redis_url, prefix, "status")
        assert [e["pid"] for e in status["encoders"]] == pids and status["encoders"][0]["streams"] == 0
        stopped = _encoders(cluster, redis_url, prefix, "down")
        assert [e["pid"] for e in stopped["encoders"]] == pids
        assert _encoders(cluster, redis_url, prefix, "status", ok=False) is None
    finally:
        for proc in procs:
            stop_group(proc)
        _encoders_down(cluster, redis_url, prefix)
        drop_prefix(redis_url, prefix)


def _encoders(cluster: str, redis_url: str, prefix: str, action: str, ok: bool = True) -> dict | None:
    """`scenekv encoders ACTION --json` for the deployment: its JSON (None: no pool)."""
    out = subprocess.run(
        [sys.executable, "-m", "scenekv.cli", "encoders", action, "--json", "--ray-address", cluster,
         "--redis-url", redis_url, "--prefix", prefix],
        capture_output=True, text=True, env=clean_env(), timeout=180,
    )  # fmt: skip
    assert (out.returncode == 0) == ok, out.stdout + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _encoders_down(cluster: str, redis_url: str, prefix: str) -> None:
    """Whatever the test left running (nothing, if it passed)."""
    subprocess.run(
        [sys.executable, "-m", "scenekv.cli", "encoders", "down", "--ray-address", cluster,
         "--redis-url", redis_url, "--prefix", prefix],
        capture_output=True, env=clean_env(), timeout=180,
    )  # fmt: skip
