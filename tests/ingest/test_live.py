"""Live sources on loopback: HTTP MPEG-TS, RTSP (PyAV listens, a child process publishes) and UDP.

Each test bounds its wall time with a watchdog that closes the source, so a regression fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time

import pytest

from scenekv.ingest import Reconnect, SourceLostWarning, open_source
from scenekv.ingest.live import LiveSource
from scenekv.world.cut_video import read_frame_number

from support.live_server import TSServer


@pytest.fixture(scope="module")
def ts_file(tmp_path_factory):
    from scenekv.world.cut_video import make_video

    return make_video(
        tmp_path_factory.mktemp("live") / "clip.ts", duration=3.0, fps=25, size=(160, 120), gop=25
    )


@contextlib.contextmanager
def served(ts_file, **kwargs):
    server = TSServer(ts_file.read_bytes(), 3.0, **kwargs)
    try:
        yield server
    finally:
        server.close()


def collect(src, limit_s=20.0, on_frame=None):
    """Iterate to the end, but never longer than ``limit_s`` (a watchdog closes the source)."""
    watchdog = threading.Timer(limit_s, src.close)
    watchdog.start()
    frames = []
    try:
        for f in src:
            frames.append(f)
            if on_frame:
                on_frame(f)
    finally:
        watchdog.cancel()
    return frames


def check_timeline(frames, fps_in=25):
    """pts increase and match the frame numbers drawn in the pixels (within half a frame)."""
    pts = [f.pts for f in frames]
    assert pts == sorted(set(pts))
    n0 = read_frame_number(frames[0].image)
    for f in frames:
        assert abs((read_frame_number(f.image) - n0) / fps_in - (f.pts - frames[0].pts)) <= 0.5 / fps_in


def test_http_mpegts_live(ts_file):
    with served(ts_file) as server:
        src = open_source(server.url, fps=5.0, reconnect=Reconnect(max_attempts=0))
        assert isinstance(src, LiveSource) and src.live
        with pytest.warns(SourceLostWarning, match="reconnecting is disabled"):
            frames = collect(src)
    assert 14 <= len(frames) <= 16  # 3 s at 5 fps
    assert frames[0].pts == 0.0 and read_frame_number(frames[0].image) == 0
    check_timeline(frames)
    steps = [b.pts - a.pts for a, b in zip(frames, frames[1:], strict=False)]
    assert all(abs(s - 0.2) < 0.021 for s in steps)
    assert src.stats.frames == len(frames) and src.stats.dropped == 0 and src.stats.decode_s > 0
    assert src.stats.duration == pytest.approx(3.0, abs=0.15)


def test_reconnects_with_backoff_and_keeps_the_timeline_increasing(ts_file):
    with served(ts_file, cut_first=0.5, max_connections=2) as server:
        src = open_source(server.url, fps=5.0, reconnect=Reconnect(initial=0.1, max_attempts=2))
        with pytest.warns(SourceLostWarning, match="gave up after 2 reconnect attempt"):
            frames = collect(src)
    assert src.stats.reconnects == 1
    numbers = [read_frame_number(f.image) for f in frames]
    restart = next(i for i in range(1, len(numbers)) if numbers[i] < numbers[i - 1])
    assert numbers[restart] == 0  # the second connection starts the clip again...
    before, after = frames[:restart], frames[restart:]
    assert after[0].pts > before[-1].pts  # ...but the timeline keeps going forward
    check_timeline(before)
    check_timeline(after)
    assert 20 <= len(frames) <= 25  # ~1.5 s + 3 s at 5 fps


def test_slow_consumer_drops_oldest_and_gets_the_newest(ts_file):
    with served(ts_file, speed=None) as server:  # as fast as the socket goes: 75 frames at once
        src = open_source(server.url, fps=None, queue_size=2, reconnect=Reconnect(max_attempts=0))
        with pytest.warns(SourceLostWarning):
            frames = collect(src, on_frame=lambda f: time.sleep(0.05))
    total = frames[-1].index + 1
    assert total == 75  # every frame was sampled...
    assert src.stats.dropped > 0 and len(frames) + src.stats.dropped == total  # ...most were dropped
    assert read_frame_number(frames[-1].image) == 74  # the newest frame was kept, not the oldest
    assert [f.index for f in frames] == sorted({f.index for f in frames})


def test_close_is_prompt_on_an_endless_stream(ts_file):
    with served(ts_file, speed=1.0, loop=True) as server:
        src = open_source(server.url, fps=5.0, timeout=2.0)
        first = [next(src) for _ in range(3)]
        started = time.monotonic()
        src.close()
        assert time.monotonic() - started < 2.5
        assert list(src) == []
        src._thread.join(3.0)
        assert not src._thread.is_alive()
    assert [f.index for f in first] == [0, 1, 2]


PUBLISHER = r"""
import sys, time, av
url, path = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 15
while True:  # the receiver may not be listening yet
    try:
        out = av.open(url, mode="w", format="rtsp", options={"rtsp_transport": "tcp"})
        break
    except Exception:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
inp = av.open(path)
src = inp.streams.video[0]
dst = out.add_stream_from_template(src)
t0 = time.monotonic()
for packet in inp.demux(src):
    if packet.dts is None:
        continue
    time.sleep(max(0.0, t0 + float(packet.dts * src.time_base) / 2 - time.monotonic()))  # 2x real time
    packet.stream = dst
    out.mux(packet)
out.close()
"""


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rtsp_published_on_loopback(media):
    path = media("rtsp_src.mp4", fps=25, duration=3.0, gop=25)
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, url, str(path)])
    try:
        src = open_source(
            url,
            fps=5.0,
            timeout=15.0,
            options={"rtsp_flags": "listen", "listen_timeout": "10"},
            reconnect=Reconnect(max_attempts=0),
        )
        with pytest.warns(SourceLostWarning):
            frames = collect(src)
    finally:
        publisher.wait(20)
    assert publisher.returncode == 0
    assert 13 <= len(frames) <= 16
    check_timeline(frames)
    assert read_frame_number(frames[-1].image) >= 70  # it ran to the end of the clip


def test_udp_mpegts(ts_file):
    port = free_port(socket.SOCK_DGRAM)
    data = ts_file.read_bytes()
    stop = threading.Event()

    def send():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not stop.is_set():  # a broadcaster does not care whether anyone listens yet
                for pos in range(0, len(data), 1316):
                    s.sendto(data[pos : pos + 1316], ("127.0.0.1", port))
                    time.sleep(3.0 / 4 / (len(data) / 1316))  # 4x real time
                    if stop.is_set():
                        return

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        src = open_source(f"udp://127.0.0.1:{port}", fps=5.0, timeout=3.0)
        frames = []
        with src:
            for f in src:
                frames.append(f)
                if len(frames) == 10:
                    break
    finally:
        stop.set()
        sender.join(2)
    assert len(frames) == 10
    pts = [f.pts for f in frames]
    assert pts == sorted(set(pts)) and pts[0] == 0.0
