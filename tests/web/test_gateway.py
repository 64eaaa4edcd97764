"""The WebSocket protocol end to end: a real websockets client against a gateway started here, on a
real SceneKVService (tiny random model, local Ray, real Redis under a unique key prefix)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from scenekv.web.config import GatewayConfig
from scenekv.web.protocol import pack_binary_frame
from scenekv.web.server import GatewayThread

from support.ws_helpers import (
    KEYS,
    ask,
    data_url,
    frame_jpeg,
    halves,
    is_halves,
    local_service,
    of_type,
    phone_jpeg,
    push,
    recv_until,
    send,
    start_push,
)

pytestmark = pytest.mark.slow


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service():
    with local_service("web") as svc:
        yield svc


@pytest.fixture(scope="module")
def media_root(tmp_path_factory, media):
    root = tmp_path_factory.mktemp("served-media")
    clip = media("web-clip.mp4", duration=6.0, cuts=[3.0])
    (root / "clip.mp4").write_bytes(clip.read_bytes())
    return root


@pytest.fixture(scope="module")
def gateway(service, media_root):
    config = GatewayConfig(port=0, media_root=media_root, progress_interval_s=0.3)
    with GatewayThread(service, config) as gw:
        yield gw


@pytest.fixture
def ws(gateway):
    with connect(gateway.ws_url, open_timeout=10, max_size=None) as conn:
        yield conn


def http_get(url: str, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def http_bytes(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# -- tests ------------------------------------------------------------------------------------------
def test_push_30_frames_then_ask_at_an_anchor(ws):
    start_push(ws)
    push(ws, range(0, 15), binary=True)
    push(ws, range(15, 30), binary=False)  # both frame encodings
    seen: list[dict] = []
    first = recv_until(ws, of_type("scene.closed"), seen=seen)
    assert first["scene_id"] == 0 and first["start"] == 0.0
    assert 9.0 <= first["end"] <= 11.0  # the cut at 10 s
    deltas, done = ask(ws, "q1", at=12, max_tokens=12)
    assert done["type"] == "answer.done", done
    assert deltas and "".join(d["text"] for d in deltas) == done["text"]
    assert any(e["start"] <= 12 <= e["end"] for e in done["evidence"]), done["evidence"]
    assert done["ttft_ms"] > 0 and done["usage"]["generated_tokens"] <= 12
    assert not any(m["type"] == "error" for m in seen), seen


def test_progress_reports_frames_lag_and_memory(ws):
    start_push(ws)
    push(ws, range(16))  # more than the 12-frame device window: older chunks go to Redis
    progress = recv_until(
        ws, lambda m: m["type"] == "ingest.progress" and m.get("frames") == 16 and m.get("memory_bytes")
    )
    assert progress["pts"] == 15.0 and progress["lag_s"] >= 0 and progress["chunks"] >= 1


def test_two_clients_on_one_stream_both_get_scenes(gateway, ws):
    sid = start_push(ws)
    push(ws, range(3))
    with connect(gateway.ws_url, open_timeout=10) as viewer:
        send(viewer, type="session.start", stream_id=sid)
        started = recv_until(viewer, of_type("session.started"))
        assert started["stream_id"] == sid
        push(ws, range(3, 26))
        a = recv_until(ws, of_type("scene.closed", scene_id=0))
        b = recv_until(viewer, of_type("scene.closed", scene_id=0))
        assert (a["start"], a["end"]) == (b["start"], b["end"])
        # the viewer can ask about the pusher's stream
        _, done = ask(viewer, "v1", last=5, max_tokens=4)
        assert done["type"] == "answer.done"


def test_cancel_stops_an_answer(ws):
    start_push(ws)
    push(ws, range(8))
    text = "Describe everything in detail."
    # control: uncancelled, the same question runs to its token limit (greedy: no early end)
    _, full = ask(ws, "control", text, max_tokens=300)
    assert full["finish_reason"] == "length" and full["usage"]["generated_tokens"] == 300
    send(ws, type="question.ask", id="long", text=text, max_tokens=1024)
    recv_until(ws, of_type("answer.delta", id="long"))
    send(ws, type="question.cancel", id="long")
    done = recv_until(ws, lambda m: m.get("id") == "long" and m["type"] == "answer.done")
    assert done["finish_reason"] == "cancelled"  # as the engine reports it, not forced by the gateway
    assert done["usage"]["generated_tokens"] < 300
    send(ws, type="question.cancel", id="long")  # no longer in flight
    assert recv_until(ws, of_type("error", id="long"))["code"] == "unknown_question"


def test_reconnect_with_stream_id_continues(gateway):
    with connect(gateway.ws_url) as first:
        sid = start_push(first)
        push(first, range(10))
        recv_until(first, lambda m: m["type"] == "ingest.progress" and m.get("pts") == 9.0)
    with connect(gateway.ws_url) as again:
        send(again, type="session.start", stream_id=sid, stream_key=KEYS[sid])
        started = recv_until(again, of_type("session.started"))
        assert started["stream_id"] == sid and started["last_pts"] == 9.0
        push(again, [5])  # already in the stream
        assert recv_until(again, of_type("error"))["code"] == "bad_pts"
        push(again, range(10, 16))
        _, done = ask(again, "r1", at=14, max_tokens=4)
        assert done["type"] == "answer.done"
        assert any(e["start"] <= 14 <= e["end"] for e in done["evidence"])


def test_a_phone_jpeg_reaches_the_encoder_upright(ws, service, monkeypatch):
    """A phone stores its picture as the sensor saw it, with EXIF orientation 6 (a quarter turn
    clockwise to show it); the frame the encoder gets must be the picture as the phone showed it."""
    handed: list = []
    push_frame = service.service.push_frame  # the async service the gateway awaits

    async def recording(sid, pts, image, **kwargs):  # the decoded frame, as the encoder gets it
        handed.append(image)
        return await push_frame(sid, pts, image, **kwargs)

    monkeypatch.setattr(service.service, "push_frame", recording)
    start_push(ws)
    ws.send(pack_binary_frame(0.0, phone_jpeg(halves(128, 96))))
    recv_until(ws, lambda m: m["type"] == "ingest.progress" and m.get("frames") == 1)
    (frame,) = handed
    assert frame.shape == (96, 128, 3) and is_halves(frame)


def test_anchor_in_the_future_is_an_error(ws):
    start_push(ws)
    push(ws, range(5))
    _, err = ask(ws, "future", at=3600)
    assert err["type"] == "error" and err["code"] == "anchor_in_future" and err["id"] == "future"
    _, ok = ask(ws, "now", at=2, max_tokens=2)  # the connection is still usable
    assert ok["type"] == "answer.done"


def test_malformed_messages_get_errors_and_the_connection_stays_usable(ws):
    def expect(raw: str | bytes, code: str) -> None:
        ws.send(raw)
        err = recv_until(ws, of_type("error"), timeout=10)
        assert err["code"] == code, err

    expect("{oops", "bad_json")
    expect('{"type": "teleport"}', "unknown_type")
    expect('{"type": "session.start"}', "bad_request")
    expect(pack_binary_frame(0.0, frame_jpeg(0)), "no_session")  # frames before session.start
    expect('{"type": "question.ask", "id": "a", "text": "hi"}', "no_session")
    expect('{"type": "session.start", "stream_id": "s-does-not-exist"}', "unknown_stream")
    start_push(ws)
    expect('{"type": "question.ask", "id": "a", "text": "hi"}', "no_frames")  # before any frame
    expect('{"type": "question.ask", "id": "a"}', "bad_request")
    expect(pack_binary_frame(0.0, b"not an image"), "bad_image")
    expect(b"\x00\x00\x00\x05{bad}jpeg", "bad_json")
    expect(pack_binary_frame(1.0, b"\xff" * (5 << 20)), "too_large")  # over the 4 MiB frame limit
    expect(json.dumps({"type": "question.ask", "id": "b", "text": "x" * 100_000}), "too_large")
    push(ws, range(2, 6))  # still usable after every error
    _, done = ask(ws, "fine", max_tokens=2)
    assert done["type"] == "answer.done"


def test_sources_are_checked(ws):
    def expect(source: str, code: str) -> None:
        send(ws, type="session.start", source=source)
        assert recv_until(ws, of_type("error"), timeout=15)["code"] == code, source

    expect("file:../../etc/passwd", "forbidden_source")
    expect("gopher://example.com/x", "forbidden_source")
    expect("/etc/passwd", "bad_request")
    expect("file:nope.mp4", "bad_request")
    expect("http://127.0.0.1:6379/", "forbidden_source")  # the server's own Redis, say
    expect("http://169.254.169.254/latest/meta-data/", "forbidden_source")


def test_file_source_under_the_media_root(ws):
    send(ws, type="session.start", source="file:clip.mp4", fps=2)
    started = recv_until(ws, of_type("session.started"), timeout=30)
    assert started["source"] == "file:clip.mp4"  # the server path is not echoed
    seen: list[dict] = []
    progress = recv_until(
        ws, lambda m: m["type"] == "ingest.progress" and m.get("status") == "done", timeout=60, seen=seen
    )
    assert progress["frames"] == 12 and progress["scenes"] == 2  # a cut at 3 s
    # every scene of the finished file closes with a caption, the last one too (as session.end would)
    deadline = time.monotonic() + 60
    captions: dict[int, str] = {}
    while len(captions) < progress["scenes"]:
        captions.update(
            (m["scene_id"], m["caption"]) for m in seen if m["type"] == "scene.closed" and m.get("caption")
        )
        if len(captions) < progress["scenes"]:
            seen.append(json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic()))))
    assert sorted(captions) == [0, 1] and all(captions.values())
    _, done = ask(ws, "q", "what happens?", at=4.0, max_tokens=3)  # still answerable
    assert done["type"] == "answer.done"
    send(ws, type="frame.append", pts=99, image=data_url(frame_jpeg(0)))  # the server reads this one
    assert recv_until(ws, of_type("error"))["code"] == "bad_request"


def test_rate_limits(service):
    config = GatewayConfig(port=0, frames_per_s=2, questions_per_min=1)
    with GatewayThread(service, config) as gw, connect(gw.ws_url) as conn:
        start_push(conn)
        push(conn, range(6))  # a burst of 4 passes, then 2 frames/s
        limited = [recv_until(conn, of_type("error"))["pts"] for _ in range(2)]
        assert limited == [4.0, 5.0]
        _, done = ask(conn, "one", max_tokens=2)
        assert done["type"] == "answer.done"
        _, refused = ask(conn, "two")
        assert refused["code"] == "rate_limited"
    assert gw.gateway.metrics.value("scenekv_errors_total", code="rate_limited") == 3


def test_token_is_required_when_set(service):
    config = GatewayConfig(port=0, token="s3cret")
    with GatewayThread(service, config) as gw:
        with pytest.raises(InvalidStatus) as info:
            connect(gw.ws_url)
        assert info.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            connect(gw.ws_url, additional_headers={"Authorization": "Bearer wrong"})
        with connect(gw.ws_url, additional_headers={"Authorization": "Bearer s3cret"}) as conn:
            start_push(conn)
        with connect(gw.ws_url + "?token=s3cret") as conn:
            start_push(conn)
        assert http_get(gw.http_url + "metrics")[0] == 401
        assert http_get(gw.http_url + "metrics?token=s3cret")[0] == 200
        assert http_get(gw.http_url + "healthz")[0] == 200
        assert http_get(gw.http_url + "streams/s1/captions.vtt")[0] == 401  # like /ws
        assert http_get(gw.http_url + "media/clip.mp4")[0] == 401


def test_foreign_browser_origin_is_refused(gateway):
    with pytest.raises(InvalidStatus) as info:
        connect(gateway.ws_url, origin="http://evil.example")
    assert info.value.response.status_code == 403
    own = gateway.http_url.rstrip("/")
    with connect(gateway.ws_url, origin=own) as conn:
        start_push(conn)


def test_go_away_on_drain(service):
    gw = GatewayThread(service, GatewayConfig(port=0)).start()
    with connect(gw.ws_url) as conn:
        start_push(conn)
        gw.stop(drain_s=0.5)
        assert recv_until(conn, of_type("go_away"), timeout=5)["time_left_ms"] == 500
        with pytest.raises(ConnectionClosed) as info:
            conn.recv(timeout=5)
        assert info.value.rcvd.code == 1001


def test_healthz_metrics_and_page(gateway, ws):
    start_push(ws)
    push(ws, range(3))
    ask(ws, "m1", max_tokens=2)
    status, body = http_get(gateway.http_url + "healthz")
    health = json.loads(body)
    assert status == 200 and health["ok"] and health["redis"]["ok"] and health["ray"]["ok"]
    assert health["model"]["random_weights"] is True
    (encoder,) = health["encoders"]
    assert encoder["streams"] >= 1 and encoder["pid"] > 0 and encoder["node"] and encoder["device"] == "cpu"
    status, text = http_get(gateway.http_url + "metrics")
    assert status == 200
    encoded = re.search(r'scenekv_encoder_frames_encoded_total\{encoder="0",node="[^"]+"\} (\S+)', text)
    assert encoded and float(encoded.group(1)) >= 3, text[-2000:]
    assert 'scenekv_encoder_up{encoder="0"} 1.0' in text
    for name in [
        "scenekv_frames_ingested_total",
        "scenekv_encode_seconds_bucket",
        "scenekv_frame_queue_depth",
        "scenekv_ingest_lag_seconds",
        "scenekv_stream_memory_bytes",
        'scenekv_answers_total{finish_reason="length"}',
        "scenekv_answer_ttft_seconds_count",
        "scenekv_errors_total",
        'scenekv_encoder_running_generations{encoder="0"',
        'scenekv_encoder_background_generations{encoder="0"',
        'scenekv_encoder_decode_batch_count{encoder="0"',
    ]:
        assert name in text, name
    status, page = http_get(gateway.http_url)
    assert status == 200 and '<script type="module" src="/static/app.js">' in page
    assert http_get(gateway.http_url + "static/app.js")[0] == 200
    assert http_get(gateway.http_url + "static/../server.py")[0] == 404
    assert http_get(gateway.http_url + "nope")[0] == 404
    config = json.loads(http_get(gateway.http_url + "config.json")[1])
    assert config["random_weights"] is True and config["media"] == ["clip.mp4"]


def test_media_files_are_served_in_ranges_inside_the_media_root_only(gateway, media_root, tmp_path):
    data = (media_root / "clip.mp4").read_bytes()
    url = gateway.http_url + "media/clip.mp4"
    status, headers, body = http_bytes(url, {"Range": "bytes=100-1099"})
    assert status == 206 and body == data[100:1100]
    assert headers["Content-Range"] == f"bytes 100-1099/{len(data)}" and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "video/mp4"
    status, headers, body = http_bytes(url, {"Range": "bytes=1000-"})  # open: to the end (small file)
    assert status == 206 and body == data[1000:]
    status, _, body = http_bytes(url, {"Range": "bytes=-500"})  # the last 500 bytes
    assert status == 206 and body == data[-500:]
    status, _, body = http_bytes(url)  # no Range: the whole (small) file
    assert status == 200 and body == data
    status, headers, _ = http_bytes(url, {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
    assert http_bytes(url, {"Range": "bytes=500-100"})[0] == 200  # invalid: ignored (RFC 9110)
    assert http_bytes(url, {"Range": "items=0-1"})[0] == 200
    (media_root / ".hidden.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"secret")
    (media_root / "out.mp4").symlink_to(tmp_path / "secret.mp4")
    try:
        for name, code in [
            ("..%2Fsecret.mp4", 403),
            ("%2Fetc%2Fpasswd", 403),
            ("out.mp4", 403),
            ("nope.mp4", 404),
            (".hidden.mp4", 404),  # as hidden as in the page's list
        ]:
            assert http_bytes(gateway.http_url + "media/" + name)[0] == code, name
    finally:
        (media_root / "out.mp4").unlink()
        (media_root / ".hidden.mp4").unlink()


def test_caption_downloads_parse_and_match_the_scenes(ws, gateway, service):
    import io

    import srt
    import webvtt

    sid = start_push(ws)
    push(ws, range(30))  # cuts at 10 s and 20 s
    send(ws, type="session.end")
    recv_until(ws, of_type("session.ended"), timeout=60)
    scenes = service.scenes(sid)
    assert len(scenes) == 3 and all(s.caption for s in scenes)
    base = gateway.http_url + f"streams/{sid}/captions."
    status, headers, vtt = http_bytes(base + "vtt")
    assert status == 200 and headers["Content-Type"].startswith("text/vtt")
    assert f'filename="{sid}.vtt"' in headers["Content-Disposition"]
    cues = webvtt.from_buffer(io.StringIO(vtt.decode()))
    assert [round(c.start_in_seconds) for c in cues] == [round(s.start) for s in scenes]
    assert vtt.decode() == service.caption_track(sid, "vtt")  # what `scenekv caption` writes
    status, _, body = http_bytes(base + "srt")
    subs = list(srt.parse(body.decode()))
    assert status == 200 and [round(s.start.total_seconds()) for s in subs] == [
        round(s.start) for s in scenes
    ]
    status, _, body = http_bytes(base + "jsonl")
    rows = [json.loads(line) for line in body.decode().splitlines()]
    assert status == 200 and [r["scene"] for r in rows] == [s.scene_id for s in scenes]
    assert http_bytes(gateway.http_url + "streams/nope/captions.vtt")[0] == 404
