"""Faults injected from outside while a real client is connected: the encoder's process is killed with
SIGKILL mid push-stream. Real SceneKVService (tiny random model, local Ray, real Redis), real
gateway, real websockets client."""

from __future__ import annotations

import os
import signal
import time

import pytest
import ray
from websockets.sync.client import ClientConnection, connect

from scenekv.web.config import GatewayConfig
from scenekv.web.protocol import pack_binary_frame
from scenekv.web.server import GatewayThread

from support.ws_helpers import (
    KEYS,
    Pusher,
    ask,
    local_service,
    of_type,
    push,
    recv_until,
    send,
    start_push,
)

pytestmark = pytest.mark.slow

IDLE_S = 2.0


@pytest.fixture(scope="module")
def service():
    with local_service("faults") as svc:
        yield svc


@pytest.fixture(scope="module")
def gateway(service):
    config = GatewayConfig(port=0, progress_interval_s=0.3, retry_after_ms=300, idle_s=IDLE_S)
    with GatewayThread(service, config) as gw:
        yield gw


def ask_until_answered(conn: ClientConnection, pusher: Pusher, qid: str, timeout: float = 90.0) -> dict:
    """A question refused because the encoder is away is asked again after ``retry_after_ms``."""
    deadline = time.monotonic() + timeout
    for attempt in range(1000):
        _, end = ask(conn, f"{qid}-{attempt}", at=5.0, max_tokens=4)
        if end["type"] == "answer.done":
            return end
        assert end["code"] == "encoder_unavailable" and end["retry_after_ms"] > 0, end
        assert time.monotonic() < deadline, end
        pusher.pump(end["retry_after_ms"] / 1000)
    raise AssertionError("never answered")


def test_sigkill_of_the_encoder_mid_push_loses_no_acknowledged_frame(service, gateway):
    n = 40
    with connect(gateway.ws_url, open_timeout=10, max_size=None) as conn:
        sid = start_push(conn)
        pusher = Pusher(conn)
        pusher.send_up_to(20)
        pusher.wait_acked(19, timeout=60)
        before = ask_until_answered(conn, pusher, "before")
        assert before["usage"]["memory_tokens"] > 0

        pid = ray.get(service.encoder.pid.remote())
        os.kill(pid, signal.SIGKILL)  # the real process, as the OOM killer or a crash would
        pusher.send_up_to(n)  # the client keeps pushing while the encoder is away
        pusher.wait_acked(n - 1, timeout=120)
        assert ray.get(service.encoder.pid.remote()) != pid  # Ray restarted it: a new process

        after = ask_until_answered(conn, pusher, "after")
        assert after["usage"]["memory_tokens"] > 0 and after["evidence"]
        send(conn, type="session.end")
        recv_until(conn, of_type("session.ended"), timeout=60)
        assert conn.protocol.state.name == "OPEN"  # the same socket the whole time

    # Every frame the client sent is in Redis, each once and in order (frame indices are dense).
    info = service.store.info(sid)
    assert info.last_pts == float(n - 1) and info.next_index == n
    stored = sorted(
        (m.first_frame, m.last_frame, m.first_pts, m.last_pts) for m in service.store.chunk_index(sid)
    )
    assert stored[0][0] == 0 and stored[0][2] == 0.0
    for (_, last, _, last_pts), (first, _, first_pts, _) in zip(stored, stored[1:], strict=False):
        assert first == last + 1 and first_pts == last_pts + 1.0
    # and the stream's last scene was closed by session.end on the restarted encoder
    assert all(s.closed for s in service.scenes(sid))


def open_streams(service) -> list[str]:
    return ray.get(service.encoder.open_streams.remote())


def test_an_idle_push_stream_is_released_and_continues_on_attach(service, gateway):
    ws_url = gateway.ws_url
    with connect(ws_url, open_timeout=10, max_size=None) as conn:
        sid = start_push(conn)
        push(conn, range(13))  # a cut at 10 s: scene 0 closes, scene 1 stays open
        recv_until(conn, lambda m: m["type"] == "ingest.progress" and m.get("pts") == 12.0)
        time.sleep(IDLE_S * 2)  # no frames, but a client is connected: kept
        assert sid in open_streams(service)
    deadline = time.monotonic() + IDLE_S + 15
    while sid in open_streams(service):  # no client and no frames: released
        assert time.monotonic() < deadline, "the idle stream was never released"
        time.sleep(0.2)
    scenes = service.scenes(sid)
    assert [s.closed for s in scenes] == [True, True]  # its last scene was closed, captioned
    assert scenes[-1].caption
    assert service.store.info(sid).last_pts == 12.0  # the device window was written out

    with connect(ws_url, open_timeout=10, max_size=None) as conn:
        send(conn, type="session.start", stream_id=sid, stream_key=KEYS[sid])
        assert recv_until(conn, of_type("session.started"))["last_pts"] == 12.0
        push(conn, range(13, 16))
        recv_until(conn, lambda m: m["type"] == "ingest.progress" and m.get("pts") == 15.0)
        send(conn, type="session.end")
        recv_until(conn, of_type("session.ended"), timeout=60)
    info = service.store.info(sid)
    assert info.last_pts == 15.0 and info.next_index == 16


def test_reattaching_after_the_encoder_died_keeps_every_acknowledged_frame(service, gateway):
    """The client pushes, the encoder is killed, the client reconnects and attaches by stream id:
    the frames that were only on the dead encoder's device are in the stream all the same."""
    with connect(gateway.ws_url, open_timeout=10, max_size=None) as conn:
        sid = start_push(conn)
        pusher = Pusher(conn)
        pusher.send_up_to(10)
        pusher.wait_acked(9, timeout=60)
    stored = service.store.stored_pts(sid)
    assert stored is None or stored < 9.0  # the newest frames live only on the device
    os.kill(ray.get(service.encoder.pid.remote()), signal.SIGKILL)
    deadline = time.monotonic() + 120
    with connect(gateway.ws_url, open_timeout=10, max_size=None) as conn:
        while True:
            send(conn, type="session.start", stream_id=sid, stream_key=KEYS[sid])
            reply = recv_until(conn, lambda m: m["type"] in ("session.started", "error"), timeout=60)
            if reply["type"] == "session.started":
                break
            assert reply["code"] == "encoder_unavailable" and time.monotonic() < deadline, reply
            time.sleep(reply.get("retry_after_ms", 500) / 1000)
        assert reply["last_pts"] == 9.0  # not the older pts Redis held when the encoder died
        send(conn, type="session.end")
        recv_until(conn, of_type("session.ended"), timeout=60)
    info = service.store.info(sid)
    assert info.last_pts == 9.0 and info.next_index == 10


def test_a_frame_that_fails_does_not_use_up_its_pts(gateway):
    with connect(gateway.ws_url, open_timeout=10, max_size=None) as conn:
        start_push(conn)
        push(conn, range(3))
        conn.send(pack_binary_frame(3.0, b"\xff\xd8 not a jpeg"))
        refused = recv_until(conn, of_type("error"))
        assert refused["code"] == "bad_image" and refused["pts"] == 3.0
        push(conn, [3])  # the same pts with a good image: accepted, not bad_pts
        recv_until(conn, lambda m: m["type"] == "ingest.progress" and m.get("pts") == 3.0)
