"""A WebSocket client's helpers for the gateway tests: a synthetic 1 fps clip, a phone's photo, send, wait."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
from collections.abc import Callable

import numpy as np
from PIL import Image
from websockets.sync.client import ClientConnection

from scenekv.web.protocol import pack_binary_frame

COLORS = [(200, 40, 40), (40, 180, 60), (50, 70, 220)]  # three scenes: hard cuts at 10 s and 20 s


def frame_jpeg(t: int, size: tuple[int, int] = (128, 96)) -> bytes:
    """Frame ``t`` of a 1 fps clip: flat colour per scene plus a moving white bar (motion inside scenes)."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = COLORS[min(t // 10, len(COLORS) - 1)]
    x = (t * 11) % (w - 12)
    img[:, x : x + 12] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def world_jpegs(path, seed: int, duration: float) -> tuple[object, list[bytes]]:
    """A world video rendered to ``path`` at 1 fps, 320x180: its truth and its frames as a camera
    would send them (JPEG, quality 92)."""
    from scenekv.ingest import open_source
    from scenekv.world.render import make_world_video

    truth = make_world_video(path, seed=seed, duration=duration, size=(320, 180), fps=1)
    out = []
    with open_source(str(path), fps=1.0) as src:
        for frame in src:
            buf = io.BytesIO()
            Image.fromarray(frame.image).save(buf, format="JPEG", quality=92)
            out.append(buf.getvalue())
    return truth, out


def halves(w: int = 128, h: int = 96) -> np.ndarray:
    """A landscape picture, red on the left and blue on the right: any turn of it shows."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (230, 20, 20)
    img[:, w // 2 :] = (20, 20, 230)
    return img


def is_halves(rgb: np.ndarray) -> bool:
    """``rgb`` is ``halves()`` upright (any size): red on the left third, blue on the right third."""
    w = rgb.shape[1]
    left, right = rgb[:, : w // 3].mean(axis=(0, 1)), rgb[:, -(w // 3) :].mean(axis=(0, 1))
    return bool(left[0] > 180 and left[2] < 70 and right[2] > 180 and right[0] < 70)


def phone_jpeg(upright: np.ndarray) -> bytes:
    """``upright`` as a phone's camera stores it: the sensor's pixels (a quarter turn anticlockwise)
    and EXIF orientation 6, which tells a viewer to turn them a quarter turn clockwise."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    buf = io.BytesIO()
    Image.fromarray(np.rot90(upright).copy()).save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


KEYS: dict[str, str] = {}  # stream_id -> the owner key its session.started gave


def send(conn: ClientConnection, **msg) -> None:
    conn.send(json.dumps(msg))


def recv_until(conn: ClientConnection, pred, timeout: float = 30.0, seen: list | None = None) -> dict:
    """Next message matching ``pred`` (others are appended to ``seen``)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching message within {timeout} s; saw {seen!r}")
        msg = json.loads(conn.recv(timeout=left))
        if msg.get("type") == "session.started" and msg.get("stream_key"):
            KEYS[msg["stream_id"]] = msg["stream_key"]  # the tests re-attach as owners with it
        if pred(msg):
            return msg
        if seen is not None:
            seen.append(msg)


def of_type(kind: str, **fields):
    return lambda m: m["type"] == kind and all(m.get(k) == v for k, v in fields.items())


def start_push(conn: ClientConnection, fps: float = 1.0) -> str:
    send(conn, type="session.start", source="push", fps=fps, carriers="pool:4")
    started = recv_until(conn, of_type("session.started"))
    assert started["random_weights"] is True and started["model"] == "tiny-random-llava-onevision"
    return started["stream_id"]


def push(conn: ClientConnection, times, binary: bool = True) -> None:
    for t in times:
        if binary:
            conn.send(pack_binary_frame(float(t), frame_jpeg(t)))
        else:
            send(conn, type="frame.append", pts=float(t), image=data_url(frame_jpeg(t)))


class Pusher:
    """A client that keeps every frame until an ``ingest.progress`` acknowledges it and re-sends
    from ``resend_from`` whenever the server refuses a frame with ``encoder_unavailable``; every
    message it reads is kept in ``seen``. ``frame(i)``: the JPEG of frame i (pts i)."""

    def __init__(self, conn: ClientConnection, frame: Callable[[int], bytes] = frame_jpeg) -> None:
        self.conn, self.frame, self.next, self.acked = conn, frame, 0, -1.0
        self.refusals: list[dict] = []
        self.seen: list[dict] = []
        self.resume_at = 0.0

    def pump(self, timeout: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = json.loads(self.conn.recv(timeout=max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                return
            self.seen.append(msg)
            if msg["type"] == "ingest.progress" and msg.get("pts") is not None:
                self.acked = max(self.acked, msg["pts"])
            elif msg["type"] == "error" and msg["code"] == "encoder_unavailable" and "pts" in msg:
                self.refusals.append(msg)
                self.next = min(self.next, int(msg["resend_from"]))
                self.resume_at = time.monotonic() + msg["retry_after_ms"] / 1000
            elif msg["type"] == "error":
                raise AssertionError(f"unexpected error {msg}")

    def send_up_to(self, n: int) -> None:
        while self.next < n:
            if time.monotonic() < self.resume_at:
                self.pump(self.resume_at - time.monotonic())
                continue
            self.conn.send(pack_binary_frame(float(self.next), self.frame(self.next)))
            self.next += 1
            self.pump(0.02)

    def wait_acked(self, pts: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < pts:
            assert time.monotonic() < deadline, f"pts {pts} not acknowledged (acked {self.acked})"
            self.send_up_to(int(pts) + 1)  # re-sends whatever was refused meanwhile
            self.pump(0.2)


def ask(conn: ClientConnection, qid: str, text: str = "What happens?", **kw) -> tuple[list[dict], dict]:
    send(conn, type="question.ask", id=qid, text=text, **kw)
    deltas: list[dict] = []
    end = recv_until(
        conn, lambda m: m.get("id") == qid and m["type"] in ("answer.done", "error"), seen=deltas
    )
    return [d for d in deltas if d["type"] == "answer.delta" and d["id"] == qid], end


SMALL_WINDOW = {"window": 12, "chunk_frames": 4}  # chunks written to Redis after a few frames


@contextlib.contextmanager
def local_service(
    tag: str, model: str = "tiny-random-llava-onevision", rolling: dict | None = SMALL_WINDOW, **options
):
    """A SceneKVService, as a BlockingService (a GatewayThread serves on its loop), on ``model``
    (the tiny random one by default; ``scenekv-world``: the world
    model), local Ray and the real Redis under a fresh key prefix; every key under it is deleted
    afterwards. ``rolling``: the memory's settings (None: the service's own); ``options``: more of
    the service's arguments (``stream_caps``)."""
    import uuid

    import redis

    from scenekv.workers.blocking_service import BlockingService

    from support.redis_fixtures import REDIS_URL, drop_prefix

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        raise AssertionError(f"no Redis at {REDIS_URL} ({exc}); run scripts/ensure-redis.sh") from None
    prefix = f"skvtest:{tag}:{uuid.uuid4().hex[:10]}:"
    svc = BlockingService(
        model=model,
        redis_url=REDIS_URL,
        rolling=rolling,
        prefix=prefix,
        num_cpus=2,
        **options,
    )
    try:
        yield svc
    finally:
        svc.shutdown()
        client = redis.Redis.from_url(REDIS_URL)
        drop_prefix(client, prefix)
        assert not list(client.scan_iter(match=f"{prefix}*", count=1000))
        client.close()
