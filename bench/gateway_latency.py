"""The gateways' own share of latency with N clients spread over 1 and over 2 gateways, from /metrics.

A private Ray head on this machine (2 CPUs) and real Redis, under a fresh key prefix. For each
``--gateways`` count, that many real `scenekv serve` processes (tiny random model) over one shared
encoder pool: one encoder, started (detached) by the run's first gateway and used by every later
one, so no gateway after the first loads the model. N WebSocket clients in this process, assigned
to the gateways round-robin, each open a push stream, add one watch (``red background``, waiting
for its ``watch.added``), push ``--frames`` JPEG frames at 1 fps, ask one question and end the
stream. Two
histograms of every gateway are read before and after, their bucket counts summed over the
gateways:

- ``scenekv_gateway_frame_seconds``: reading a pushed frame's message, then from the front of its
  connection's queue to the encoder call (the wait behind earlier frames is the encoder's
  backpressure, not the gateway's share);
- ``scenekv_gateway_send_seconds``: a server message (answer tokens among them) from being queued
  for its client to written to the socket.

p50/p99 are interpolated inside the histogram's buckets (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20 ms, ...),
so they are bucket estimates, not exact order statistics. Also reported: the most threads any
gateway process had under load (from /proc), and each gateway's count at idle (after the table).
The gateways are stopped (SIGTERM) between gateway counts, the encoder pool at the end (`scenekv
encoders down`), then the Ray head; the prefix's keys are deleted from Redis.

    python bench/gateway_latency.py [--clients 200,1000] [--gateways 1,2] [--frames 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import redis
from PIL import Image
from websockets.asyncio.client import connect

from scenekv.web.protocol import pack_binary_frame

HISTOGRAMS = ("scenekv_gateway_frame_seconds", "scenekv_gateway_send_seconds")
BIN = Path(sys.executable).parent  # `scenekv` and `ray` of this venv


def _jpeg(t: int) -> bytes:
    img = np.full((96, 128, 3), (40 * t) % 255, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    """This environment without the address of another Ray (nodes and drivers that inherit
    RAY_ADDRESS try to reach it); auth and usage stats off, as for the tests' private clusters."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    """In a process group of its own: stopping the group stops this process and its children only
    (`ray stop` would stop every Ray on the machine)."""
    out = log.open("w")
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=_env())
    finally:
        out.close()


def _stop(*procs: subprocess.Popen) -> None:
    """SIGTERM to each one's group, then a wait; SIGKILL to the groups still there."""
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
        left = [p for p in procs if p.poll() is None]
        for proc in left:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        for proc in left:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)


def _ray_head(temp: str, log: Path) -> tuple[subprocess.Popen, str]:
    """`ray start --head` (2 CPUs) with a temp dir of its own (short: Ray's socket paths must fit);
    its address once `ray status` answers there."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = _spawn(
        [str(BIN / "ray"), "start", "--block", "--head", f"--port={port}", f"--temp-dir={temp}",
         "--num-cpus=2", "--include-dashboard=false", "--node-ip-address=127.0.0.1",
         "--disable-usage-stats"],
        log,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    status = [str(BIN / "ray"), "status", f"--address={address}"]
    while subprocess.run(status, capture_output=True, env=_env()).returncode:
        if head.poll() is not None or time.monotonic() > deadline:
            _stop(head)
            raise RuntimeError(f"the Ray head did not start: see {log}")
        time.sleep(1)
    return head, address


def _gateway(where: list[str], limits: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    """A `scenekv serve` on the deployment ``where`` names; its port once /healthz answers."""
    port = _free_port()
    cmd = [str(BIN / "scenekv"), "serve", "--model", "tiny-random-llava-onevision", "--port", str(port)]
    cmd += [*where, "--frames-per-s", "1000", "--questions-per-min", "1000", "--log-level", "WARNING"]
    proc = _spawn(cmd + limits, log)
    deadline = time.monotonic() + 600
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                raise RuntimeError(f"the server did not start: see {log}") from None
            time.sleep(1)


def _buckets(ports: list[int]) -> dict[str, dict[float, float]]:
    """Each histogram's cumulative bucket counts, summed over the gateways."""
    out: dict[str, dict[float, float]] = {h: {} for h in HISTOGRAMS}
    for port in ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        for line in text.splitlines():
            for h in HISTOGRAMS:
                if line.startswith(h + "_bucket{"):
                    le = line.split('le="')[1].split('"')[0]
                    le = float("inf") if le == "+Inf" else float(le)
                    out[h][le] = out[h].get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def _quantile(cum: dict[float, float], q: float) -> float | None:
    """Linear interpolation inside the bucket that holds quantile ``q`` (cumulative counts)."""
    edges = sorted(cum)
    total = cum[edges[-1]] if edges else 0
    if not total:
        return None
    rank, lo, below = q * total, 0.0, 0.0
    for le in edges:
        if cum[le] >= rank:
            if le == float("inf"):
                return lo
            return lo + (le - lo) * (rank - below) / max(cum[le] - below, 1e-12)
        lo, below = le, cum[le]
    return lo


async def _until(ws, *types: str, id: str | None = None) -> dict:
    """The next message of one of ``types`` (with ``id``, if given); an error for ``id`` raises."""
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 600))
        if id is not None and msg.get("id") == id and msg["type"] == "error" and "error" not in types:
            raise RuntimeError(f"{msg.get('code')}: {msg.get('message')}")
        if msg["type"] in types and (id is None or msg.get("id") == id):
            return msg


class ClientFailed(Exception):
    """A client's step that failed: ``stage`` says which (the row counts them by stage)."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage}: {type(cause).__name__}: {cause}")
        self.stage = stage


async def _client(port: int, frames: int, results: list) -> None:
    stage = "connect"
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws", max_size=2**23, open_timeout=120) as ws:
            stage = "start"
            start = {"type": "session.start", "source": "push", "fps": 1.0, "carriers": "pool:4"}
            await ws.send(json.dumps(start))
            await _until(ws, "session.started")
            stage = "watch"
            await ws.send(json.dumps({"type": "watch.add", "id": "w", "text": "red background"}))
            await _until(ws, "watch.added", id="w")
            stage = "frames"
            for t in range(frames):
                await ws.send(pack_binary_frame(float(t), _jpeg(t)))
                await asyncio.sleep(1.0)
            stage = "answer"
            ask = {"type": "question.ask", "id": "q", "text": "What happens?", "max_tokens": 8}
            await ws.send(json.dumps(ask))
            t0 = time.perf_counter()
            msg = await _until(ws, "answer.done", "error", id="q")
            results.append((msg["type"], time.perf_counter() - t0))
            stage = "end"  # as a camera that stops: its place goes
            await ws.send(json.dumps({"type": "session.end"}))
            await _until(ws, "session.ended")
    except Exception as exc:
        raise ClientFailed(stage, exc) from exc


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


async def _load(ports: list[int], pids: list[int], n: int, frames: int) -> dict:
    before = _buckets(ports)
    results: list = []
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(_client(ports[i % len(ports)], frames, results)) for i in range(n)]
    peak = 0
    while not all(t.done() for t in tasks):
        peak = max(peak, *(_threads(pid) for pid in pids))
        await asyncio.sleep(0.5)
    errors = [t.exception() for t in tasks if t.exception() is not None]
    wall = time.perf_counter() - t0
    after = _buckets(ports)
    row = {"gateways": len(ports), "clients": n, "wall_s": round(wall, 1)}
    row["answers"] = sum(r[0] == "answer.done" for r in results)
    for h, short in zip(HISTOGRAMS, ("frame", "send"), strict=True):
        delta = {le: after[h].get(le, 0) - before[h].get(le, 0) for le in after[h]}
        row[f"{short}_n"] = int(delta.get(float("inf"), 0))
        for q in (0.5, 0.99):
            v = _quantile(delta, q)
            row[f"{short}_p{int(q * 100)}_ms"] = round(1000 * v, 2) if v is not None else None
    row["server_threads_peak"] = peak
    row["client_errors"] = len(errors)
    by_stage = Counter(getattr(e, "stage", type(e).__name__) for e in errors)
    row["errors_by_stage"] = ",".join(f"{k}:{v}" for k, v in sorted(by_stage.items())) or "-"
    if errors:
        print(f"first client error: {errors[0]}", file=sys.stderr, flush=True)
    return row


def _drop_prefix(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        dropped, batch = 0, []
        for key in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                dropped += client.delete(*batch)
                batch = []
        return dropped + (client.delete(*batch) if batch else 0)
    finally:
        client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="200,1000")
    ap.add_argument("--gateways", default="1,2")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()
    clients = [int(n) for n in args.clients.split(",")]
    counts = [int(g) for g in args.gateways.split(",")]
    prefix = f"skvbench{uuid.uuid4().hex[:8]}:"
    logs = Path(tempfile.mkdtemp(prefix="scenekv-gateway-bench-"))  # kept for a failure
    ray_temp = tempfile.mkdtemp(prefix="skvray", dir="/tmp")  # short: Ray's socket paths must fit
    head, header, done, idle = None, False, False, []
    try:
        head, address = _ray_head(ray_temp, logs / "ray-head.log")
        where = ["--ray-address", address, "--redis-url", args.redis_url, "--prefix", prefix]
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; Ray head {address}, prefix {prefix}")
        for g in counts:
            # one loopback address opens every client: the per-client caps are lifted, no token;
            # the push streams' cap holds across the pool (each client ends its stream)
            per = str(math.ceil(max(clients) / g) + 16)
            limits = ["--no-token", "--max-connections", per, "--max-connections-per-client", per]
            limits += ["--max-push-streams", str(sum(clients) * len(counts) + 16)]
            gateways: list[tuple[subprocess.Popen, int]] = []
            try:
                for i in range(g):  # the first starts the pool (or finds it), the others find it
                    first = ["--encoders", "1"] if i == 0 else []
                    gateways.append(_gateway(where + first, limits, logs / f"serve-{g}-{i}.log"))
                ports, pids = [p for _, p in gateways], [proc.pid for proc, _ in gateways]
                idle.append(f"{g} gateway{'s' * (g > 1)}: {', '.join(str(_threads(p)) for p in pids)}")
                for n in clients:
                    row = asyncio.run(_load(ports, pids, n, args.frames))
                    if not header:  # each row as it is measured: a long run that is stopped keeps what it had
                        print("| " + " | ".join(row) + " |")
                        print("|" + "---|" * len(row))
                        header = True
                    print("| " + " | ".join(str(v) for v in row.values()) + " |", flush=True)
            finally:
                _stop(*(proc for proc, _ in gateways))  # the encoder pool stays
        print(f"server threads idle: {'; '.join(idle)}")
        done = True
    finally:
        if head is not None:  # the pool's encoders are detached: stopped by name, then the head
            with (
                (logs / "encoders-down.log").open("w") as out,
                contextlib.suppress(subprocess.TimeoutExpired),
            ):
                down = [str(BIN / "scenekv"), "encoders", "down", *where]
                subprocess.run(
                    down, stdout=out, stderr=subprocess.STDOUT, env=_env(), timeout=300, check=False
                )
            _stop(head)
        shutil.rmtree(ray_temp, ignore_errors=True)
        _drop_prefix(args.redis_url, prefix)
        if done:
            shutil.rmtree(logs, ignore_errors=True)
        else:
            print(f"logs kept in {logs}", file=sys.stderr)


if __name__ == "__main__":
    main()
