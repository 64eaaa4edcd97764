"""Edge rules of the gateway without a model: message parsing, sources, auth, limits, metrics."""

from __future__ import annotations

import base64
import io
import json
import math
import socket
import struct

import numpy as np
import pytest
from PIL import Image

from scenekv.web import protocol as P
from scenekv.web.auth import origin_ok, redact_url, token_ok
from scenekv.web.imaging import decode_image
from scenekv.web.metrics import GatewayMetrics
from scenekv.web.protocol import ProtocolError, pack_binary_frame, parse_binary, parse_text
from scenekv.web.ratelimit import TokenBucket
from scenekv.web.sources import list_media, resolve_source

LIMITS = {"max_text_bytes": 64 * 1024, "max_frame_bytes": 4 * 2**20}


def jpeg(w: int = 64, h: int = 48, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def code_of(text: str) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_text(text, **LIMITS)
    return info.value.code


def test_every_client_message_parses():
    start = parse_text(
        '{"type": "session.start", "source": "push", "fps": 2, "carriers": "pool:4"}', **LIMITS
    )
    assert start == P.SessionStart(source="push", stream_id=None, fps=2.0, carriers="pool:4")
    attach = parse_text('{"type": "session.start", "stream_id": "s1"}', **LIMITS)
    assert attach.stream_id == "s1" and attach.source is None
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg()).decode()
    frame = parse_text(json.dumps({"type": "frame.append", "pts": 1.5, "image": url}), **LIMITS)
    assert frame.pts == 1.5 and frame.image == jpeg()
    ask = parse_text('{"type": "question.ask", "id": "q1", "text": "what?", "range": [1, "00:02"]}', **LIMITS)
    assert ask.range == (1, "00:02") and ask.max_tokens == 128
    assert parse_text('{"type": "question.cancel", "id": 7}', **LIMITS) == P.QuestionCancel(id="7")
    assert isinstance(parse_text('{"type": "session.end"}', **LIMITS), P.SessionEnd)
    kept = parse_text(
        '{"type": "session.start", "source": "push", "keep_full": "30m", "keep_compact": 7200,'
        ' "max_stream_bytes": "2MiB"}',
        **LIMITS,
    )
    assert kept.retention == {"keep_s": 1800.0, "max_s": 7200.0, "max_bytes": 2_097_152}
    found = parse_text('{"type": "search", "id": "s", "text": "black circle", "streams": ["a"]}', **LIMITS)
    assert found == P.SearchRequest(id="s", text="black circle", streams=("a",), limit=10)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"no_type": 1}', "bad_request"),
        ('{"type": "video.play"}', "unknown_type"),
        ('{"type": "session.start"}', "bad_request"),
        ('{"type": "session.start", "source": "push", "fps": 0}', "bad_request"),
        ('{"type": "session.start", "source": "push", "stream_id": "s"}', "bad_request"),
        ('{"type": "session.start", "source": "push", "keep_full": "1 hour"}', "bad_request"),
        ('{"type": "session.start", "source": "push", "keep_full": NaN}', "bad_request"),
        ('{"type": "session.start", "source": "push", "keep_compact": -5}', "bad_request"),
        ('{"type": "session.start", "source": "push", "max_stream_bytes": "2 megabytes"}', "bad_request"),
        ('{"type": "session.start", "source": "push", "max_stream_bytes": true}', "bad_request"),
        ('{"type": "frame.append", "image": "data:image/jpeg;base64,AAAA"}', "bad_request"),
        ('{"type": "frame.append", "pts": -1, "image": "data:image/jpeg;base64,AAAA"}', "bad_request"),
        ('{"type": "frame.append", "pts": 1, "image": "http://x/y.jpg"}', "bad_request"),
        ('{"type": "frame.append", "pts": 1, "image": "data:image/jpeg;base64,@@@"}', "bad_image"),
        ('{"type": "question.ask", "text": "hi"}', "bad_request"),
        ('{"type": "question.ask", "id": "q", "text": "  "}', "bad_request"),
        ('{"type": "question.ask", "id": "q", "text": "hi", "at": 1, "last": 5}', "bad_request"),
        ('{"type": "question.ask", "id": "q", "text": "hi", "range": [1]}', "bad_request"),
        ('{"type": "question.ask", "id": "q", "text": "hi", "max_tokens": 0}', "bad_request"),
        ('{"type": "question.ask", "id": "q", "text": "hi", "last": true}', "bad_request"),
        ('{"type": "question.cancel"}', "bad_request"),
        ('{"type": "search", "text": "circle"}', "bad_request"),
        ('{"type": "search", "id": "s", "text": " "}', "bad_request"),
        ('{"type": "search", "id": "s", "text": "circle", "streams": []}', "bad_request"),
        ('{"type": "search", "id": "s", "text": "circle", "streams": [""]}', "bad_request"),
        ('{"type": "search", "id": "s", "text": "circle", "limit": 101}', "bad_request"),
    ],
)
def test_malformed_messages_have_stable_codes(text, code):
    assert code_of(text) == code


BIG = "9" * 400  # an int json reads, but float() cannot hold
HUGE = "1" * 5000  # more digits than Python converts (ValueError inside json.loads)
_ASK = '{"type": "question.ask", "id": "q", "text": "hi", '
_START = '{"type": "session.start", "source": "push", '
_FRAME = '{"type": "frame.append", "image": "data:image/jpeg;base64,AAAA", '
_WATCH = '{"type": "watch.add", "id": "w", "text": "a dog", '


@pytest.mark.parametrize(
    "text",
    [
        _FRAME + f'"pts": {HUGE}}}',
        _FRAME + f'"pts": {BIG}}}',
        _FRAME + '"pts": 1e300}',  # beyond MAX_SECONDS: would overflow when written as a clock
        _START + f'"fps": {BIG}}}',
        _START + f'"keep_full": {BIG}}}',
        _START + f'"keep_compact": {BIG}}}',
        _START + f'"max_stream_bytes": {BIG}}}',  # math.isfinite raises on it in memory/retention.py
        _START + f'"max_stream_bytes": "{BIG}TB"}}',
        _START + '"max_stream_bytes": "9999999999999999999999TB"}',  # int(inf)
        _START + '"keep_full": "' + "1" * 100 + 's"}',
        _ASK + f'"at": {BIG}}}',
        _ASK + '"at": 1.7e308}',
        _ASK + f'"range": [0, {BIG}]}}',
        _ASK + f'"last": {BIG}}}',
        _ASK + '"at": "banana"}',  # a string the service cannot read as a time
        _ASK + '"at": "\\u0000"}',
        _ASK + '"range": ["1:00", "99:99"]}',
        _WATCH + f'"cooldown_s": {BIG}}}',
        _WATCH + '"webhook": "http://example.com\\u0000@10.0.0.1/"}',
        _WATCH + '"webhook": "http://example.com/a b"}',
        '{"type": "question.ask", "id": "q", "text": "\\ud800"}',  # a lone surrogate: not text
        '{"type": "session.start", "stream_id": "\\udc80"}',
        '{"type": "watch.add", "id": "w", "text": "x\\udfff"}',
    ],
)
def test_malformed_numbers_times_and_strings_are_bad_request(text):
    """Each once ended as ``internal`` (OverflowError, ValueError, UnicodeEncodeError later on) or
    reached the service unchecked."""
    assert code_of(text) == "bad_request"


def test_negative_zero_is_zero():
    url = "data:image/jpeg;base64,AAAA"
    frame = parse_text(json.dumps({"type": "frame.append", "pts": -0.0, "image": url}), **LIMITS)
    ask = parse_text(_ASK + '"at": -0.0}', **LIMITS)
    watch = parse_text(_WATCH + '"cooldown_s": -0.0}', **LIMITS)
    assert all(math.copysign(1, x) == 1 for x in (frame.pts, ask.at, watch.cooldown_s))


def test_sizes_are_checked_before_parsing(monkeypatch):
    def no_parse(*args, **kwargs):
        raise AssertionError("json.loads ran on an oversized message")

    monkeypatch.setattr(P.json, "loads", no_parse)
    bomb = "[" * 100_000 + "]" * 100_000  # nesting deep enough for a RecursionError, and large
    assert code_of(bomb) == "too_large"
    padded = json.dumps(
        {"type": "frame.append", "pts": 1, "pad": "x" * 70_000, "image": "data:image/png;base64,AA"}
    )
    assert code_of(padded) == "too_large"  # only the image may make a frame larger than a message


def test_bytes_not_characters_are_measured():
    wide = json.dumps({"type": "session.end", "pad": "\u20ac" * 25_000}, ensure_ascii=False)
    assert len(wide) < LIMITS["max_text_bytes"] < len(wide.encode())
    assert code_of(wide) == "too_large"


def test_nesting_within_the_size_limit_is_bad_json():
    assert code_of('{"type": "session.end", "x": ' + "[" * 30_000 + "]" * 30_000 + "}") == "bad_json"


def test_size_limits():
    big_question = json.dumps({"type": "question.ask", "id": "q", "text": "x" * 70_000})
    assert code_of(big_question) == "too_large"
    huge = json.dumps(
        {"type": "frame.append", "pts": 1, "image": "data:image/jpeg;base64," + "A" * (6 << 20)}
    )
    assert code_of(huge) == "too_large"
    with pytest.raises(ProtocolError) as info:
        parse_binary(pack_binary_frame(1.0, b"\xff" * (5 << 20)), max_frame_bytes=4 << 20)
    assert info.value.code == "too_large"


def test_binary_frames():
    frame = parse_binary(pack_binary_frame(2.25, jpeg()), max_frame_bytes=1 << 20)
    assert frame.pts == 2.25 and frame.image == jpeg()
    bad = [
        b"\x00\x00",  # shorter than the length prefix
        struct.pack(">I", 999) + b"{}",  # header length past the end
        struct.pack(">I", 2) + b"{}",  # header without pts, no image
        struct.pack(">I", 3) + b"{x}" + b"img",  # header not JSON
        struct.pack(">I", 2000) + b"[" * 2000 + b"img",  # nested too deeply (RecursionError)
        struct.pack(">I", 408) + b'{"pts":' + b"9" * 400 + b"}" + b"img",  # OverflowError
    ]
    codes = []
    for data in bad:
        with pytest.raises(ProtocolError) as info:
            parse_binary(data, max_frame_bytes=1 << 20)
        codes.append(info.value.code)
    assert codes == ["bad_request", "bad_request", "bad_request", "bad_json", "bad_json", "bad_request"]


def test_images_decode_to_small_rgb():
    assert decode_image(jpeg(64, 48)).shape == (48, 64, 3)
    big = decode_image(jpeg(1600, 900, "PNG"), max_side=512)
    assert big.shape == (288, 512, 3) and big.dtype == np.uint8
    with pytest.raises(ProtocolError) as info:
        decode_image(b"GIF89a not an image")
    assert info.value.code == "bad_image"
    with pytest.raises(ProtocolError) as info:
        decode_image(jpeg(300, 300), max_pixels=10_000)
    assert info.value.code == "too_large"


def test_sources_stay_inside_the_media_root(tmp_path):
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "clip.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"x")
    (root / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    assert resolve_source("push", root) == "push"
    assert resolve_source("file:sub/clip.mp4", root) == str((root / "sub" / "clip.mp4").resolve())
    assert resolve_source("rtsp://93.184.216.34/live", root) == "rtsp://93.184.216.34/live"
    forbidden = [
        "file:../secret.mp4",
        "file:/../../secret.mp4",
        "file:link.mp4",
        "ftp://h/x",
        "file:///etc/passwd",
    ]
    for source in forbidden:
        with pytest.raises(ProtocolError) as info:
            resolve_source(source, root)
        assert info.value.code == "forbidden_source", source
    for source in ["/etc/passwd", "file:", "file:missing.mp4", "http:///nohost"]:
        with pytest.raises(ProtocolError) as info:
            resolve_source(source, root)
        assert info.value.code == "bad_request", source
    with pytest.raises(ProtocolError) as info:
        resolve_source("file:sub/clip.mp4", None)
    assert info.value.code == "forbidden_source"
    assert list_media(root) == ["sub/clip.mp4"]


def dns(table: dict[str, list[str]]):
    """A name service for the test: host -> addresses, in getaddrinfo's shape."""

    def getaddrinfo(host, port):
        if host not in table:
            raise OSError(f"unknown host {host}")
        return [(0, 0, 0, "", (a, 0)) for a in table[host]]

    return getaddrinfo


def test_urls_that_reach_inside_are_refused_unless_allowed():
    names = dns({
        "cam.example.com": ["93.184.216.34"],
        "nas.lan": ["192.168.1.20"],
        "both.example.com": ["93.184.216.35", "10.1.2.3"],  # one internal answer is enough to refuse
        "metadata.google.internal": ["169.254.169.254"],
        "v6.example.com": ["::ffff:127.0.0.1"],
    })  # fmt: skip
    ok = ["rtsp://cam.example.com/live", "https://cam.example.com:8443/a.m3u8", "http://93.184.216.36/x.ts"]
    for url in ok:
        assert resolve_source(url, None, resolve=names) == url
    inside = [
        "http://127.0.0.1:6379/",
        "http://localhost:8765/",  # through the system resolver: loopback
        "rtsp://nas.lan/stream",
        "http://both.example.com/x",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8765/",
        "http://v6.example.com/",
        "http://0.0.0.0:80/",
        "udp://@:1234",
        "udp://239.1.1.1:5000",
        "http://100.64.0.1/",
    ]
    for url in inside:
        with pytest.raises(ProtocolError) as info:
            resolve_source(url, None, resolve=names if "localhost" not in url else socket.getaddrinfo)
        assert info.value.code == "forbidden_source", url
        assert "--allow-source-host" in str(info.value)
    # the operator's allow-list: a host name, an address, a network
    assert resolve_source("rtsp://nas.lan/stream", None, ["nas.lan"], resolve=names)
    assert resolve_source("http://127.0.0.1:9/x", None, ["127.0.0.1"], resolve=names)
    assert resolve_source("http://both.example.com/x", None, ["10.0.0.0/8"], resolve=names)
    with pytest.raises(ProtocolError) as info:  # allowing one network does not open the others
        resolve_source("http://nas.lan/x", None, ["10.0.0.0/8"], resolve=names)
    assert info.value.code == "forbidden_source"
    with pytest.raises(ProtocolError) as info:
        resolve_source("rtsp://no-such-host.invalid/x", None, resolve=names)
    assert info.value.code == "bad_request"


def test_token_and_origin():
    headers = {"Authorization": "Bearer s3cret"}
    assert token_ok(None, {}, "/ws")
    assert token_ok("s3cret", headers, "/ws")
    assert token_ok("s3cret", {}, "/ws?token=s3cret")
    assert not token_ok("s3cret", {}, "/ws")
    assert not token_ok("s3cret", {"Authorization": "Bearer nope"}, "/ws?token=s3cret")
    assert origin_ok(None, "127.0.0.1:8765", ())
    assert origin_ok("http://127.0.0.1:8765", "127.0.0.1:8765", ())
    assert not origin_ok("http://evil.example", "127.0.0.1:8765", ())
    assert origin_ok("https://app.example/", "127.0.0.1:8765", ("https://app.example",))
    assert redact_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"


def test_token_bucket():
    now = [0.0]
    bucket = TokenBucket(rate=1.0, burst=2.0, clock=lambda: now[0])
    assert bucket.take() and bucket.take() and not bucket.take()
    now[0] = 1.0
    assert bucket.take() and not bucket.take()


def test_metrics_text_format():
    m = GatewayMetrics()
    m.frames.inc(3)
    m.errors.labels(code="bad_json").inc()
    m.memory.set(1024)
    m.ttft.observe(0.02)
    m.encoders.snapshot = [
        {
            "node": "10.0.0.1",
            "streams": 2,
            "frames_encoded": 40,
            "busy_seconds": 0.5,
            "batch_streams": {"buckets": [1, 2, 4], "counts": [3, 1, 0, 0], "sum": 5.0, "count": 4},
        },
        {"error": "ActorDiedError"},
    ]
    text = m.render().decode()
    assert "# TYPE scenekv_frames_ingested_total counter" in text
    assert "scenekv_frames_ingested_total 3.0" in text
    assert 'scenekv_errors_total{code="bad_json"} 1.0' in text
    assert "scenekv_stream_memory_bytes 1024.0" in text and "s1" not in text  # no stream ids
    assert "process_resident_memory_bytes" in text and "python_gc_objects_collected_total" in text
    assert 'scenekv_answer_ttft_seconds_bucket{le="0.025"} 1.0' in text
    assert 'scenekv_answer_ttft_seconds_bucket{le="+Inf"} 1.0' in text
    assert "scenekv_answer_ttft_seconds_count 1.0" in text
    assert "_created" not in text  # one series per figure, as Prometheus users expect of a gateway
    # the encoders' figures, one series per encoder; one that did not answer is down, not missing
    assert 'scenekv_encoder_streams{encoder="0",node="10.0.0.1"} 2.0' in text
    assert 'scenekv_encoder_frames_encoded_total{encoder="0",node="10.0.0.1"} 40.0' in text
    assert 'scenekv_encoder_up{encoder="0"} 1.0' in text and 'scenekv_encoder_up{encoder="1"} 0.0' in text
    labels = 'encoder="0",le="2.0",node="10.0.0.1"'
    assert "scenekv_encoder_batch_streams_bucket{" + labels + "} 4.0" in text  # cumulative: 3 + 1
    assert 'scenekv_encoder_batch_streams_count{encoder="0",node="10.0.0.1"} 4.0' in text
    assert m.value("scenekv_errors_total", code="bad_json") == 1.0
    assert m.value("scenekv_errors_total", code="other") == 0.0


def test_serve_command_is_light_and_parses_its_flags():
    import argparse
    import subprocess
    import sys

    from scenekv.cli import serve as cmd_serve

    parser = argparse.ArgumentParser()
    cmd_serve.add_arguments(parser)
    args = parser.parse_args(["--port", "0", "--token", "t", "--allow-origin", "https://a.example"])
    assert (args.host, args.port, args.token, args.allow_origin) == (
        "127.0.0.1",
        0,
        "t",
        ["https://a.example"],
    )
    assert (args.model, args.fps, args.carriers, args.media_root) == ("auto", 1.0, "pool:16", None)
    assert "RANDOM WEIGHTS" in cmd_serve.random_weights_banner({"model": "tiny", "random_weights": True})
    world = cmd_serve.random_weights_banner({"model": "scenekv-world", "world_only": True})
    assert "trained only on SceneKV's synthetic world" in world
    assert cmd_serve.random_weights_banner({"model": "llava-hf/x"}) is None
    # `scenekv --help` stays instant, and the web layer talks to workers only (no Ray/torch/qa here).
    code = (
        "import sys, scenekv.cli.serve, scenekv.web.server;"
        "heavy = ('ray', 'torch', 'scenekv.qa', 'scenekv.memory', 'scenekv.vlm');"
        "bad = [m for m in heavy if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
