"""`scenekv serve` as a real process, stopped from outside the way an operator or systemd stops it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from websockets.sync.client import connect

from scenekv.web.protocol import pack_binary_frame

from support.ws_helpers import ask, frame_jpeg, of_type, recv_until, send, start_push

pytestmark = pytest.mark.slow

DRAIN_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A serve process on a free port with its own Redis child (nothing answers at REDIS_URL)."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    log = open(tmp_path / "serve.log", "w+")  # noqa: SIM115 (read back on failure)
    proc = subprocess.Popen(
        [sys.executable, "-m", "scenekv.cli", "serve", "--port", str(port), "--model",
         "tiny-random-llava-onevision", "--drain-s", str(DRAIN_S)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        try:
            urllib.request.urlopen(url + "healthz", timeout=2).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "serve did not come up in 120 s"
            time.sleep(0.3)
    token = None  # no --token: serve made one and printed the page's URL with it, as Jupyter does
    while token is None:
        token = re.search(r"\?token=(\S+)", (tmp_path / "serve.log").read_text())
        assert token or time.monotonic() < deadline, "serve printed no URL with a token"
        time.sleep(0.1)
    assert urlopen_status(url.replace("http", "ws", 1) + "ws") == 401  # and /ws wants it
    yield proc, url + "?token=" + token.group(1), tmp_path / "serve.log"
    for child in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
        child.kill()
    proc.kill()
    proc.wait()


def urlopen_status(url: str) -> int:
    """The HTTP status of a GET (a WebSocket handshake refused before the upgrade)."""
    try:
        return urllib.request.urlopen(url.replace("ws", "http", 1), timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def encoder_process(proc: subprocess.Popen) -> psutil.Process:
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if "EncoderActor" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    raise AssertionError("no ray::EncoderActor process under serve")


def test_sigterm_stops_serve_within_drain_plus_5_s_even_with_a_hung_encoder(server):
    proc, url, log = server
    children = psutil.Process(proc.pid).children(recursive=True)
    assert any("redis-server" in c.name() for c in children)  # the private Redis child
    ws_url = url.replace("http", "ws", 1).replace("/?token=", "/ws?token=")
    with connect(ws_url, open_timeout=10, max_size=None) as conn:
        start_push(conn)
        for t in range(3):
            conn.send(pack_binary_frame(float(t), frame_jpeg(t)))
        recv_until(conn, lambda m: m["type"] == "ingest.progress" and m.get("pts") == 2.0)
        assert ask(conn, "q1", at=1.0, max_tokens=2)[1]["type"] == "answer.done"

        encoder_process(proc).suspend()  # SIGSTOP: the actor neither answers nor dies
        for t in range(3, 8):  # frames and a question now wait on the frozen encoder
            conn.send(pack_binary_frame(float(t), frame_jpeg(t)))
        send(conn, type="question.ask", id="q2", text="What happens?", max_tokens=8)
        time.sleep(1.0)

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        recv_until(conn, of_type("go_away"), timeout=10)
        try:
            proc.wait(timeout=DRAIN_S + 5.0 + 5.0)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve still running {DRAIN_S + 10:.0f} s after SIGTERM:\n{log.read_text()[-3000:]}")
        took = time.monotonic() - t0
    assert took <= DRAIN_S + 5.0, f"SIGTERM took {took:.1f} s (bound: drain {DRAIN_S} s + 5 s)"
    time.sleep(0.5)
    left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"still running after serve stopped: {[c.name() for c in left]}"


def test_sigterm_on_an_idle_server_stops_cleanly(server):
    proc, _, log = server
    children = psutil.Process(proc.pid).children(recursive=True)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=DRAIN_S + 10) == 0, log.read_text()[-3000:]
    assert time.monotonic() - t0 <= DRAIN_S + 5.0
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert "did not finish" not in log.read_text()  # the orderly path, not the hard stop
