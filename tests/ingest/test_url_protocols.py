"""URL sources open with a protocol whitelist for their scheme (never ``file``); local files without."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from scenekv.ingest import errors as E
from scenekv.ingest import open_source, probe
from scenekv.ingest.probe import URL_PROTOCOLS, open_url, url_protocols

LOCAL = {"file", "pipe", "fd", "concat", "concatf", "subfile", "cache", "async", "android_content"}


@pytest.fixture()
def http_root(tmp_path):
    """A folder served over HTTP on loopback: (folder, base URL)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=tmp_path))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_no_scheme_may_open_local_files():
    for scheme in [*URL_PROTOCOLS, "RTSP"]:
        names = set(url_protocols(scheme).split(","))
        assert names and not names & LOCAL, scheme
    assert "udp" not in url_protocols("rtsp")  # RTSP is read over TCP
    assert {"udp", "rtp"} <= set(url_protocols("rtsp", {"rtsp_transport": "udp"}).split(","))
    with pytest.raises(E.UnsupportedSource):
        url_protocols("file")


def test_open_url_passes_the_whitelist_and_a_callers_own_wins(monkeypatch):
    seen = []

    def fake_open(url, options=None, **kwargs):
        seen.append(dict(options))
        return object()

    monkeypatch.setattr(probe.av, "open", fake_open)
    open_url("http://93.184.216.34/a.m3u8", timeout=1)
    open_url("rtsp://93.184.216.34/live", timeout=1)
    open_url("udp://93.184.216.34:5000", timeout=1, options={"protocol_whitelist": "udp,rtp"})
    assert seen[0]["protocol_whitelist"] == URL_PROTOCOLS["http"]
    assert seen[1]["protocol_whitelist"] == URL_PROTOCOLS["rtsp"] and seen[1]["rtsp_transport"] == "tcp"
    assert seen[2]["protocol_whitelist"] == "udp,rtp"


def test_local_files_open_without_a_whitelist(monkeypatch, tmp_path):
    seen = []
    (tmp_path / "clip.mp4").write_bytes(b"x")

    def fake_open(path, **kwargs):
        seen.append(kwargs)
        raise probe.av.error.InvalidDataError(1094995529, "Invalid data")

    monkeypatch.setattr(probe.av, "open", fake_open)
    with pytest.raises(E.NotMedia):
        probe.open_file(str(tmp_path / "clip.mp4"))
    assert "options" not in seen[0]


def test_hls_over_http_still_reads(http_root, media):
    root, base = http_root
    (root / "seg.ts").write_bytes(media("hls_seg.ts", duration=2.0, fps=10, size=(64, 48)).read_bytes())
    (root / "live.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg.ts\n#EXT-X-ENDLIST\n"
    )
    with open_source(base + "live.m3u8", fps=5.0, timeout=5.0) as src:
        assert len(list(src)) == 10


def test_a_served_session_description_cannot_open_rtp(http_root):
    """FFmpeg's own default for http allows udp and rtp: an SDP from a web server would bind and
    send UDP where its c= line says. The whitelist refuses it before any socket."""
    root, base = http_root
    (root / "cam.sdp").write_text(
        "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
        "m=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
    )
    with pytest.raises(E.IngestError):
        open_url(base + "cam.sdp", timeout=2.0).close()
