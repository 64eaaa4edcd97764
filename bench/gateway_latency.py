"""The gateway's own share of latency with N connected clients, read from its /metrics.

A real `scenekv serve` (tiny random model, real Redis and Ray) in a child process; N WebSocket
clients in this process each open a push stream, push ``--frames`` JPEG frames (1 per 0.5 s) and
ask one question. Two of the gateway's histograms are read before and after:

- ``scenekv_gateway_frame_seconds``: reading a pushed frame's message, then from the front of its
  connection's queue to the encoder call (the wait behind earlier frames is the encoder's
  backpressure, not the gateway's share);
- ``scenekv_gateway_send_seconds``: a server message (answer tokens among them) from being queued
  for its client to written to the socket.

p50/p99 are interpolated inside the histogram's buckets (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20 ms, ...),
so they are bucket estimates, not exact order statistics. Also reported: the server's thread count
under load (from /proc).

    python bench/gateway_latency.py [--clients 100,500] [--frames 4]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from websockets.asyncio.client import connect

from scenekv.web.protocol import pack_binary_frame

HISTOGRAMS = ("scenekv_gateway_frame_seconds", "scenekv_gateway_send_seconds")


def _jpeg(t: int) -> bytes:
    img = np.full((96, 128, 3), (40 * t) % 255, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _buckets(port: int) -> dict[str, dict[float, float]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    out: dict[str, dict[float, float]] = {h: {} for h in HISTOGRAMS}
    for line in text.splitlines():
        for h in HISTOGRAMS:
            if line.startswith(h + "_bucket{"):
                le = line.split('le="')[1].split('"')[0]
                out[h][float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
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


async def _client(port: int, frames: int, results: list) -> None:
    async with connect(f"ws://127.0.0.1:{port}/ws", max_size=2**23, open_timeout=120) as ws:
        await ws.send(
            json.dumps({"type": "session.start", "source": "push", "fps": 2.0, "carriers": "pool:4"})
        )
        while json.loads(await ws.recv())["type"] != "session.started":
            pass
        for t in range(frames):
            await ws.send(pack_binary_frame(t * 0.5, _jpeg(t)))
            await asyncio.sleep(0.5)
        await ws.send(
            json.dumps({"type": "question.ask", "id": "q", "text": "What happens?", "max_tokens": 8})
        )
        t0 = time.perf_counter()
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 600))
            if msg.get("id") == "q" and msg["type"] in ("answer.done", "error"):
                results.append((msg["type"], time.perf_counter() - t0))
                return


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


async def _load(port: int, pid: int, n: int, frames: int) -> dict:
    before = _buckets(port)
    results: list = []
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(_client(port, frames, results)) for _ in range(n)]
    peak = 0
    while not all(t.done() for t in tasks):
        peak = max(peak, _threads(pid))
        await asyncio.sleep(0.5)
    errors = [t.exception() for t in tasks if t.exception() is not None]
    wall = time.perf_counter() - t0
    after = _buckets(port)
    row = {"clients": n, "wall_s": round(wall, 1), "answers": sum(r[0] == "answer.done" for r in results)}
    for h, short in zip(HISTOGRAMS, ("frame", "send"), strict=True):
        delta = {le: after[h].get(le, 0) - before[h].get(le, 0) for le in after[h]}
        row[f"{short}_n"] = int(delta.get(float("inf"), 0))
        for q in (0.5, 0.99):
            v = _quantile(delta, q)
            row[f"{short}_p{int(q * 100)}_ms"] = round(1000 * v, 2) if v is not None else None
    row["server_threads_peak"] = peak
    row["client_errors"] = len(errors)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="100,500")
    ap.add_argument("--frames", type=int, default=4)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        str(Path(sys.executable).with_name("scenekv")),
        "serve",
        "--model",
        "tiny-random-llava-onevision",
        "--port",
        str(port),
    ]
    cmd += ["--frames-per-s", "1000", "--questions-per-min", "1000", "--log-level", "WARNING"]
    # one loopback address opens every client: the per-client and stream caps are lifted, no token
    n_max = str(max(int(n) for n in args.clients.split(",")) + 16)
    cmd += ["--no-token", "--max-connections", n_max, "--max-connections-per-client", n_max]
    cmd += ["--max-push-streams", n_max]
    log = open("/tmp/scenekv-gateway-bench.log", "w")  # noqa: SIM115 (the server's, kept for a failure)
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    f"the server did not start: see {log.name}"
                )
                time.sleep(1)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs; "
            f"server threads idle: {_threads(server.pid)}"
        )
        for i, n in enumerate(int(n) for n in args.clients.split(",")):
            row = asyncio.run(_load(port, server.pid, n, args.frames))
            if i == 0:  # each row as it is measured: a long run that is stopped keeps what it had
                print("| " + " | ".join(row) + " |")
                print("|" + "---|" * len(row))
            print("| " + " | ".join(str(v) for v in row.values()) + " |", flush=True)
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
