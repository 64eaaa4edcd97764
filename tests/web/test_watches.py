"""Watches end to end: the world model on Ray actors, a real gateway, a client pushing a world video.

"blue background" shows four times in the video (truth: 60-79, 102-110, 145-163, 188-209 s). Each
appearance is told once, near its first frame, through every fault a watch must outlive: the client
reconnects before the second (and is told the watch and the first hit when it attaches), the encoder
process is SIGKILLed before the third, and the gateway is replaced by a new one before the fourth.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import ray
from websockets.sync.client import ClientConnection, connect

from scenekv.web.config import GatewayConfig
from scenekv.web.server import GatewayThread

from support.ws_helpers import KEYS, Pusher, local_service, of_type, recv_until, send, world_jpegs

pytestmark = pytest.mark.slow

SEED, SECONDS = 626_262, 230
BLUE = [(60, 79), (102, 110), (145, 163), (188, 209)]  # the truth's blue-background scenes


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[bytes]:
    truth, out = world_jpegs(tmp_path_factory.mktemp("watches") / "world.mp4", SEED, SECONDS)
    blue = [(round(s.start), round(s.end)) for s in truth.scenes if s.background == "blue"]
    assert blue == BLUE  # the renderer still draws the world this test was written for
    return out


@pytest.fixture(scope="module")
def service():
    with local_service("watches", model="scenekv-world") as svc:
        yield svc


def _config() -> GatewayConfig:
    return GatewayConfig(port=0, progress_interval_s=0.3, retry_after_ms=300)


class Client(Pusher):
    """A pusher of the video's frames (re-sending what the encoder refused) that waits for hits."""

    def __init__(self, conn: ClientConnection, frames: list[bytes]) -> None:
        super().__init__(conn, frames.__getitem__)

    def push_to(self, end: int, timeout: float = 180.0) -> None:
        """Frames up to ``end`` (exclusive) pushed and acknowledged."""
        self.send_up_to(end)
        self.wait_acked(end - 1, timeout)

    def hits(self) -> list[dict]:
        return [m for m in self.seen if m["type"] == "watch.hit"]

    def wait_hit(self, start: float, *, ended: bool, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(abs(h["start"] - start) <= 2 and ("end" in h) == ended for h in self.hits()):
            assert time.monotonic() < deadline, f"no hit at {start} (ended={ended}): {self.hits()}"
            self.pump(0.2)


def _attach(url: str, sid: str, frames: list[bytes]) -> Client:
    client = Client(connect(url, open_timeout=10, max_size=None), frames)
    send(client.conn, type="session.start", stream_id=sid, stream_key=KEYS[sid])
    started = recv_until(client.conn, of_type("session.started"), timeout=30)
    client.next = int(started["last_pts"]) + 1
    client.acked = started["last_pts"]
    return client


def _near(got: list[float], want: list[float], tol: float = 2.0) -> bool:
    """The same appearances, each within ``tol`` seconds (the strict `when` grading's tolerance)."""
    return len(got) == len(want) and all(abs(a - b) <= tol for a, b in zip(got, want, strict=True))


def _starts(hits: list[dict]) -> list[float]:
    return [h["start"] for h in hits if "end" not in h]


def test_a_watch_fires_once_per_appearance_through_reconnect_encoder_kill_and_gateway_restart(
    service, frames
):
    gateway = GatewayThread(service, _config()).start()
    try:
        first = Client(connect(gateway.ws_url, open_timeout=10, max_size=None), frames)
        send(first.conn, type="session.start", source="push", fps=1.0, carriers="pool:16")
        sid = recv_until(first.conn, of_type("session.started"), timeout=30)["stream_id"]
        send(first.conn, type="watch.add", id="blue", text="blue background")
        assert (
            recv_until(first.conn, of_type("watch.added", id="blue"), timeout=30)["text"] == "blue background"
        )
        first.push_to(90)
        first.wait_hit(60, ended=False)
        first.wait_hit(60, ended=True)
        assert _near([h["start"] for h in first.hits()], [60, 60])  # told once, then its end
        assert _near([first.hits()[1]["end"]], [79])
        first.conn.close()

        # the client comes back: told the watch and its first hit, then the second appearance
        second = _attach(gateway.ws_url, sid, frames)
        second.pump(1.0)
        assert [m["id"] for m in second.seen if m["type"] == "watch.added"] == ["blue"]
        assert [("end" in h) for h in second.hits()] == [True] and _near([second.hits()[0]["start"]], [60])
        second.push_to(125)
        second.wait_hit(102, ended=True)
        assert _near(_starts(second.hits()), [102])

        # the encoder's process dies between appearances: the third is still told, once
        pid = ray.get(service.encoder.pid.remote())
        os.kill(pid, signal.SIGKILL)
        second.push_to(170)
        second.wait_hit(145, ended=True, timeout=180)
        assert _near(_starts(second.hits()), [102, 145])
        second.conn.close()
    finally:
        gateway.stop()

    # a new gateway process takes over (the old one is gone): the fourth appearance
    with GatewayThread(service, _config()) as replacement:
        third = _attach(replacement.ws_url, sid, frames)
        third.push_to(SECONDS)
        third.wait_hit(188, ended=False)
        send(third.conn, type="session.end")
        third.wait_hit(188, ended=True)
        ended = [h["start"] for h in third.hits() if "end" in h]
        assert _near(ended, [60, 102, 145, 188])  # the three before (attach) and the new one, each once
        assert _near(_starts(third.hits()), [188])
        third.conn.close()
    stored = service.store.watch_hits(sid)
    assert all(h.end is not None for h in stored) and _near([h.start for h in stored], [60, 102, 145, 188])
    for hit, (start, end) in zip(stored, BLUE, strict=True):
        assert abs(hit.start - start) <= 2 and abs(hit.end - end) <= 2  # frame precision, not scene cuts


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ({"text": ""}, "bad_request"),
        ({"text": "x" * 201}, "bad_request"),
        ({"text": "the"}, "bad_request"),  # names nothing
        ({"text": "red square", "webhook": "ftp://example.com/x"}, "bad_request"),
        ({"text": "red square", "webhook": "http://169.254.169.254/latest"}, "forbidden_source"),
        ({"text": "red square", "cooldown_s": -1}, "bad_request"),
    ],
)
def test_a_bad_watch_gets_a_clear_error_and_the_connection_stays(service, msg, code):
    with GatewayThread(service, _config()) as gw, connect(gw.ws_url, open_timeout=10) as conn:
        send(conn, type="watch.add", id="w", text="red square")
        assert recv_until(conn, of_type("error", id="w"), timeout=20)["code"] == "no_session"
        send(conn, type="session.start", source="push", fps=1.0)
        recv_until(conn, of_type("session.started"), timeout=30)
        send(conn, type="watch.add", id="w", **msg)
        assert recv_until(conn, of_type("error", id="w"), timeout=20)["code"] == code
        send(conn, type="watch.remove", id="nope")
        assert recv_until(conn, of_type("error", id="nope"), timeout=20)["code"] == "unknown_watch"
        send(conn, type="watch.add", id="ok", text="red square")
        recv_until(conn, of_type("watch.added", id="ok"), timeout=20)
        send(conn, type="watch.add", id="ok", text="red square")  # a client's retry: harmless
        again = recv_until(conn, of_type("watch.added", id="ok"), timeout=20)
        assert again == {
            "type": "watch.added",
            "id": "ok",
            "text": "red square",
            "cooldown_s": 0.0,
            "webhook": False,
        }
        send(conn, type="watch.remove", id="ok")
        recv_until(conn, of_type("watch.removed", id="ok"), timeout=20)
