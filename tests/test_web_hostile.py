"""Hostile clients against one real server: each attack as a client would send it, each refused with
its documented code, and an honest client on the same server unaffected (issue 28).

One gateway (token on, small caps so that reaching them is quick) over the tiny random model; the
honest client pushes a stream and asks about it between attacks, and must keep being answered.
"""

from __future__ import annotations

import collections
import contextlib
import http.client as httplib
import json
import threading
import time
import urllib.parse

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from scenekv.web.config import GatewayConfig
from scenekv.web.protocol import pack_binary_frame
from scenekv.web.server import GatewayThread
from scenekv.workers.stream_caps import StreamCaps

from support.hostile_images import flat_png, padded_webp, webp_canvas, with_scans
from support.ws_helpers import KEYS, ask, frame_jpeg, of_type, push, recv_until, send, start_push

pytestmark = pytest.mark.slow

TOKEN = "hostile-test-token"
CAPS = StreamCaps(push=6, file=2, live=2)


@pytest.fixture(scope="module")
def service():
    from support.ws_helpers import local_service

    with local_service("hostile", stream_caps=CAPS) as svc:
        yield svc


@pytest.fixture(scope="module")
def media_root(tmp_path_factory, media):
    root = tmp_path_factory.mktemp("hostile-media")
    (root / "clip.mp4").write_bytes(media("hostile-clip.mp4", duration=4.0, cuts=[2.0]).read_bytes())
    (root / "big.mp4").write_bytes(b"\0" * (6 << 20))  # over what a request without Range may load
    (root / ".secret.mp4").write_bytes(b"not for clients")
    (root / "list.mp4").write_text("#EXTM3U\n/etc/passwd\n")  # a playlist named like a video
    return root


@pytest.fixture(scope="module")
def gateway(service, media_root):
    config = GatewayConfig(
        port=0,
        token=TOKEN,
        media_root=media_root,
        progress_interval_s=0.3,
        idle_s=2.0,  # streams the attacks leave behind are released soon
        max_streams_per_connection=3,
        max_connections=24,
        max_connections_per_client=12,
        allowed_source_hosts=("127.0.0.1",),  # the test's own live camera, on loopback
    )
    with GatewayThread(service, config) as gw:
        yield gw


def ws_url(gateway, token: str | None = TOKEN) -> str:
    return gateway.ws_url + (f"?token={token}" if token else "")


@contextlib.contextmanager
def client(gateway, **kw):
    with connect(ws_url(gateway), open_timeout=10, max_size=None, **kw) as conn:
        yield conn


@pytest.fixture(scope="module")
def honest(gateway):
    """An honest client with a pushed stream of 6 frames, kept open for the whole module."""
    with client(gateway) as conn:
        sid = start_push(conn)
        push(conn, range(6))
        recv_until(conn, lambda m: m["type"] == "ingest.progress" and m.get("pts") == 5.0)
        yield conn, sid


def honest_ok(honest, qid: str) -> float:
    """The honest client is still served: a question answered; its time to answer.done (s)."""
    conn, _ = honest
    t0 = time.perf_counter()
    _, done = ask(conn, qid, at=3.0, max_tokens=2)
    assert done["type"] == "answer.done", done
    return time.perf_counter() - t0


def get(gateway, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """A raw GET (no URL normalising: the path goes on the wire as given)."""
    host, port = urllib.parse.urlsplit(gateway.http_url).netloc.rsplit(":", 1)
    c = httplib.HTTPConnection(host, int(port), timeout=10)
    try:
        c.putrequest("GET", path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def code_of(body: bytes) -> str | None:
    try:
        return json.loads(body).get("code")
    except ValueError:
        return None


# -- hijack: DNS rebinding, tokens, what is shown without one ---------------------------------------
@pytest.mark.parametrize("path", ["/", "/static/app.js", "/healthz", "/metrics", "/config.json", "/ws",
                                  "/media/clip.mp4"])  # fmt: skip
def test_a_rebound_name_gets_421_on_every_route(gateway, path):
    status, _, body = get(gateway, f"{path}?token={TOKEN}", {"Host": "attacker.example:8765"})
    assert status == 421 and code_of(body) == "forbidden_host"
    status, _, _ = get(gateway, f"{path}?token={TOKEN}", {"Host": "localhost"})
    assert status != 421


def test_without_the_token_healthz_says_only_up_and_nothing_else_opens(gateway):
    status, _, body = get(gateway, "/healthz")
    assert status == 200 and json.loads(body) == {"ok": True}  # no pid, node, Redis host
    status, _, body = get(gateway, f"/healthz?token={TOKEN}")
    assert status == 200 and "encoders" in json.loads(body)
    for path in ("/metrics", "/media/clip.mp4"):
        assert get(gateway, path)[0] == 401
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(gateway, None), open_timeout=10).close()
    assert refused.value.response.status_code == 401


def test_metrics_carry_no_stream_ids_and_the_standard_process_series(gateway, honest):
    _, sid = honest
    time.sleep(0.5)  # a progress tick has set the stream figures
    status, _, body = get(gateway, f"/metrics?token={TOKEN}")
    text = body.decode()
    assert status == 200 and sid not in text
    assert "process_resident_memory_bytes" in text and "python_gc_objects_collected_total" in text
    assert float(text.split("\nscenekv_stream_frames ")[1].split()[0]) >= 6


# -- read through: a stream id is not a key -----------------------------------------------------------
def test_a_stream_id_alone_lets_a_client_watch_and_ask_but_not_write(gateway, honest):
    conn, sid = honest
    with client(gateway) as stranger:
        send(stranger, type="session.start", stream_id=sid)
        started = recv_until(stranger, of_type("session.started"))
        assert started["owner"] is False and "stream_key" not in started
        assert ask(stranger, "s1", at=2.0, max_tokens=2)[1]["type"] == "answer.done"  # may ask
        stranger.send(pack_binary_frame(1e6, frame_jpeg(1)))  # a far pts would lock the owner out
        assert recv_until(stranger, of_type("error"))["code"] == "not_owner"
        for msg in (
            {"type": "session.end"},
            {"type": "watch.add", "id": "w", "text": "red square", "webhook": "https://example.com/h"},
            {"type": "watch.remove", "id": "w"},
        ):
            send(stranger, **msg)
            assert recv_until(stranger, of_type("error"))["code"] == "not_owner", msg
        send(stranger, type="session.start", stream_id=sid, stream_key="guessed-" + "x" * 20)
        assert recv_until(stranger, of_type("error"))["code"] == "not_owner"
    # the owner's stream took none of it, and its key still writes
    push(conn, [6])
    recv_until(conn, lambda m: m["type"] == "ingest.progress" and m.get("pts") == 6.0)
    with client(gateway) as again:
        send(again, type="session.start", stream_id=sid, stream_key=KEYS[sid])
        assert recv_until(again, of_type("session.started"))["owner"] is True
    honest_ok(honest, "h-read")


def test_attaching_shows_no_server_path(gateway, service):
    with client(gateway) as conn:
        send(conn, type="session.start", source="file:clip.mp4", fps=1.0, carriers="pool:4")
        sid = recv_until(conn, of_type("session.started"), timeout=60)["stream_id"]
        assert service.store.info(sid).source.startswith("/")  # what the service stored: a path
        with client(gateway) as viewer:
            send(viewer, type="session.start", stream_id=sid)
            assert recv_until(viewer, of_type("session.started"))["source"] == "file:clip.mp4"


# -- exhaustion --------------------------------------------------------------------------------------
def test_a_connection_may_start_only_so_many_streams(gateway, honest):
    with client(gateway) as greedy:
        for _ in range(3):
            start_push(greedy)
        send(greedy, type="session.start", source="push", carriers="pool:4")
        assert recv_until(greedy, of_type("error"))["code"] == "too_many_streams"
    honest_ok(honest, "h-greedy")


def test_session_start_is_rate_limited(gateway, honest):
    _, sid = honest
    with client(gateway) as hasty:
        for _ in range(15):  # attaching to an open stream: cheap for the server, so only the rate stops it
            send(hasty, type="session.start", stream_id=sid)
        replies = [recv_until(hasty, lambda m: m["type"] in ("session.started", "error")) for _ in range(15)]
        codes = [r.get("code", r["type"]) for r in replies]
        # a burst of 10, then 30 a minute (a token every 2 s: one more may come while they are sent)
        assert 10 <= codes.count("session.started") <= 11 and codes.count("rate_limited") >= 4, codes
    honest_ok(honest, "h-starts")


def test_the_server_caps_open_push_streams(gateway, service, honest):
    conns = []
    try:
        refused = None
        for _ in range(CAPS.push + 1):  # one connection per stream: the server-wide cap, not theirs
            conns.append(connect(ws_url(gateway), open_timeout=10))
            send(conns[-1], type="session.start", source="push", carriers="pool:4")
            reply = recv_until(conns[-1], lambda m: m["type"] in ("session.started", "error"))
            if reply["type"] == "error":
                refused = reply
                break
        assert refused is not None and refused["code"] == "too_many_streams"
        assert service.slots.counts()["push"] <= CAPS.push
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                if conn is not conns[-1]:
                    send(conn, type="session.end")
                    recv_until(conn, of_type("session.ended"), timeout=30)
            conn.close()
    honest_ok(honest, "h-server-cap")


def test_connections_from_one_address_are_capped(gateway, honest):
    opened = []
    try:
        with pytest.raises(InvalidStatus) as refused:
            for _ in range(20):
                opened.append(connect(ws_url(gateway), open_timeout=10))
        assert refused.value.response.status_code == 503
        assert code_of(refused.value.response.body) == "too_many_connections"
    finally:
        for conn in opened:
            conn.close()
    honest_ok(honest, "h-conns")


def test_a_message_flood_is_rate_limited_before_it_is_parsed(gateway, honest):
    with client(gateway) as flood:
        for i in range(300):
            flood.send(json.dumps({"type": "question.cancel", "id": f"x{i}"}))
        flood.send("x" * (200 << 10))  # over the text limit: refused on its size, never parsed
        codes = []
        with contextlib.suppress(TimeoutError):
            while True:
                codes.append(json.loads(flood.recv(timeout=2)).get("code"))
        assert codes.count("rate_limited") >= 100 and "internal" not in codes  # a burst of 150 passes
    assert honest_ok(honest, "h-flood") < 5


def test_a_file_read_to_its_end_gives_its_decoder_process_back(gateway, service):
    import ray

    with client(gateway) as conn:
        send(conn, type="session.start", source="file:clip.mp4", fps=2.0, carriers="pool:4")
        sid = recv_until(conn, of_type("session.started"), timeout=60)["stream_id"]
        decoder = service._decoders[sid][0]
        assert service.slots.kind(sid) == "file"
        recv_until(conn, lambda m: m["type"] == "ingest.progress" and m.get("status") == "done", timeout=60)
        deadline = time.monotonic() + 15
        while sid in service._decoders:  # the gateway's sweep reclaims it (idle_s / 4)
            assert time.monotonic() < deadline, "the finished file's decoder was never reclaimed"
            time.sleep(0.2)
        assert service.slots.kind(sid) is None  # its place is free for another file
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(decoder.progress.remote(), timeout=30)  # the process is gone
        assert service.progress(sid).status == "done"  # and the stream still says how it ended
        assert ask(conn, "after", at=1.0, max_tokens=2)[1]["type"] == "answer.done"


def test_live_urls_are_capped_and_released_when_nobody_watches_them(gateway, service, tmp_path_factory):
    from scenekv.world.cut_video import make_video

    from support.live_server import TSServer

    clip = make_video(
        tmp_path_factory.mktemp("live") / "cam.ts", duration=3.0, fps=25, size=(160, 120), gop=25
    )
    camera = TSServer(clip.read_bytes(), 3.0, speed=1.0, loop=True)  # endless, in real time
    conns, sids = [], []
    try:
        for _ in range(CAPS.live):
            conns.append(connect(ws_url(gateway), open_timeout=10))
            send(conns[-1], type="session.start", source=camera.url, fps=1.0, carriers="pool:4")
            sids.append(recv_until(conns[-1], of_type("session.started"), timeout=60)["stream_id"])
        assert all(service.slots.kind(sid) == "live" for sid in sids)
        with client(gateway) as extra:
            send(extra, type="session.start", source=camera.url, fps=1.0, carriers="pool:4")
            assert recv_until(extra, of_type("error"), timeout=60)["code"] == "too_many_streams"
        send(conns[0], type="watch.add", id="w", text="red square")  # this camera is watched for
        recv_until(conns[0], of_type("watch.added", id="w"))
        for conn in conns:
            conn.close()
        deadline = time.monotonic() + 30
        while sids[1] in service._decoders or service.slots.kind(sids[1]):  # released after idle_s
            assert time.monotonic() < deadline, "a live URL nobody watches kept decoding"
            time.sleep(0.2)
        time.sleep(3.0)  # past idle_s (2 s)
        assert sids[0] in service._decoders and service.slots.kind(sids[0]) == "live"  # watched: goes on
    finally:
        for conn in conns:
            conn.close()
        for sid in sids:
            with contextlib.suppress(Exception):
                service.end_stream(sid)
        camera.close()


def test_media_without_range_never_loads_a_large_file(gateway):
    status, _, body = get(gateway, f"/media/big.mp4?token={TOKEN}")
    assert status == 413 and code_of(body) == "too_large"
    status, headers, body = get(gateway, f"/media/big.mp4?token={TOKEN}", {"Range": "bytes=0-"})
    assert status == 206 and len(body) <= 4 << 20 and headers["Content-Range"].startswith("bytes 0-")


def test_attaching_to_a_stream_with_thousands_of_scenes_gets_all_of_them(gateway, service, honest):
    store = service.store
    sid = store.create_stream(source="push", model=service.model["model"], carriers="pool:4")
    pipe_scenes = 2500
    for i in range(pipe_scenes):
        store.put_scene(sid, i, 2.0 * i, {"end": 2.0 * i + 1.5, "closed": "1", "caption": f"scene {i}"})
    with client(gateway) as conn:
        deadline = time.monotonic() + 30
        while True:  # the streams earlier attacks left are released after idle_s
            send(conn, type="session.start", stream_id=sid)
            reply = recv_until(conn, lambda m: m["type"] in ("session.started", "error"), timeout=60)
            if reply["type"] == "session.started":
                break
            assert reply["code"] == "too_many_streams" and time.monotonic() < deadline, reply
            time.sleep(1.0)
        got = set()
        while len(got) < pipe_scenes:
            msg = json.loads(conn.recv(timeout=30))
            if msg["type"] == "scene.closed":
                got.add(msg["scene_id"])
        assert got == set(range(pipe_scenes))
        send(conn, type="question.cancel", id="nothing")  # and the connection is still served
        assert recv_until(conn, of_type("error"))["code"] == "unknown_question"
    honest_ok(honest, "h-history")


# -- malformed input ---------------------------------------------------------------------------------
MALFORMED = [
    '{"type": "frame.append", "pts": ' + "9" * 5000 + ', "image": "data:image/jpeg;base64,AAAA"}',
    '{"type": "frame.append", "pts": 1e400, "image": "data:image/jpeg;base64,AAAA"}',
    '{"type": "question.ask", "id": "q", "text": "what?", "at": 1e400}',
    '{"type": "question.ask", "id": "q", "text": "what?", "last": "99999999999999999999999h"}',
    '{"type": "session.start", "source": "push", "keep_full": "1e400s"}',
    '{"type": "session.start", "source": "http://[::1/x"}',
    '{"type": "session.start", "source": "rtsp://cam:99999/x"}',
    '{"type": "session.start", "source": "file:.secret.mp4"}',
    '{"type": "session.start", "source": "file:list.mp4"}',
    '{"type": "session.start", "source": "file:clip.mp4\\u0000"}',
    "[" * 100000 + "]" * 100000,
]


@pytest.mark.parametrize("message", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_messages_get_a_stable_code_never_internal(gateway, message):
    with client(gateway) as conn:
        conn.send(message)
        reply = recv_until(conn, of_type("error"), timeout=30)
        assert reply["code"] in ("bad_request", "forbidden_source", "too_large", "bad_json", "no_session")


@pytest.mark.parametrize("path", ["/static/%00", "/static/..%2f..%2fetc%2fpasswd", "/static/./app.js",
                                  "/media/%00", "/media/..%2fhostile-clip.mp4", "/media/.secret.mp4",
                                  "/streams/%00/captions.vtt"])  # fmt: skip
def test_malformed_paths_get_404_never_500(gateway, path):
    status, _, body = get(gateway, f"{path}?token={TOKEN}")
    assert status in (400, 403, 404), (status, body[:200])


# -- stall: hostile images --------------------------------------------------------------------------
def hostile_images() -> list[tuple[str, bytes]]:
    """What an attacker pushes, with the code each gets ("" for decoded): the crafted pictures the
    gateway refuses from their structure (each once held its loop for 0.1 to 1.7 s), and the costliest
    it still decodes (0.2-0.3 s each on a slow core, in its decode pool)."""
    return [
        ("bad_image", with_scans((2048, 2048), 499)),  # 24 KiB in 499 progressive scans
        ("", with_scans((4096, 4096), 32, padding=256 << 10)),  # 32 scans of 16 Mpx in 320 KiB
        ("too_large", flat_png(4096, 4096)),  # 16 Mpx of black in 48 KiB
        ("", flat_png(4096, 4096, padding=256 << 10)),  # the same padded to 64 pixels a byte
        ("too_large", webp_canvas(4000, 4000)),  # a 4000x4000 canvas in 138 bytes
        ("", padded_webp(4096, 4096, 256 << 10)),  # a flat 16 Mpx WebP padded to 64 pixels a byte
    ]


def test_hostile_images_on_one_connection_do_not_delay_another(gateway, honest):
    conn, _ = honest

    def pings() -> list[float]:
        """Round trips of 9 pings over ~1 s (a stall of the loop delays those sent during it)."""
        took = []
        for _ in range(9):
            t0 = time.perf_counter()
            assert conn.ping().wait(5)
            took.append(time.perf_counter() - t0)
            time.sleep(0.1)
        return took

    base_pings = pings()
    baseline = sorted(honest_ok(honest, f"h-base{i}") for i in range(3))[1]
    bombs = hostile_images()
    stop, running, ended = threading.Event(), threading.Event(), threading.Event()
    codes: collections.Counter[str] = collections.Counter()
    unexpected: list[dict] = []  # replies other than each picture's code
    decoded = [0]  # frames the attacker's stream has encoded, from its ingest.progress

    def read(bad) -> None:
        """Every reply the attacker gets, read as it comes, so that its outbox never fills."""
        with contextlib.suppress(ConnectionClosed):
            for raw in bad:
                msg = json.loads(raw)
                if msg["type"] == "error":
                    codes[msg["code"]] += 1
                    if msg["code"] != bombs[(round(msg.get("pts", 0)) - 1) % len(bombs)][0]:
                        unexpected.append(msg)
                    running.set()
                elif msg["type"] == "ingest.progress":
                    decoded[0] = max(decoded[0], msg.get("frames") or 0)
                elif msg["type"] == "session.ended":
                    ended.set()

    def attack() -> None:
        """Pushes the bombs in a loop, as fast as the gateway reads them (it stops reading while
        4 frames wait to be decoded), then ends its stream once its frames are through."""
        with client(gateway) as bad:
            start_push(bad)
            reader = threading.Thread(target=read, args=(bad,), daemon=True)
            reader.start()
            pts = 0.0
            while not stop.is_set():
                for _, image in bombs:
                    pts += 1.0
                    bad.send(pack_binary_frame(pts, image))
            send(bad, type="session.end")  # answered once every frame sent is decoded or refused
            ended.wait(30)
        reader.join(10)

    attacker = threading.Thread(target=attack, daemon=True)
    attacker.start()
    try:
        assert running.wait(30), "the attack never started"
        time.sleep(1.0)
        under_pings = pings()
        under = sorted(honest_ok(honest, f"h-attack{i}") for i in range(3))[1]
    finally:
        stop.set()
        attacker.join(60)
    figures = {
        "pings": (base_pings, under_pings),
        "answer_s": (baseline, under),
        "codes": dict(codes),
        "decoded": decoded[0],
        "unexpected": unexpected[:5],
    }
    print("hostile images:", figures)
    # the attack was real: pictures refused for their cost, and the costly ones decoded
    assert codes["too_large"] and codes["bad_image"] and not unexpected, figures
    assert decoded[0] >= 3 and ended.is_set(), figures
    assert sorted(under_pings)[len(under_pings) // 2] < 0.1, figures  # decoding on the loop: ~0.14 s
    assert under - baseline < 0.2, figures
