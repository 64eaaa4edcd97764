"""How long a scene close pauses the other streams' ingest: captions inside the batch vs scheduled.

N push streams go through one ``EncoderScheduler`` over one ``StreamHub`` (the encoder actor's
pipeline, without Ray), one thread per stream, each appending one frame a round as soon as its
last one is done (an encoder under full load). Stream 0 is a synthetic video cut every ``--scene-frames``
seconds (1 frame a second), so SceneTiling closes a scene there about that often; the other streams
show one still picture each. Two modes, same frames:

- ``inline``: the batch that closes a scene also makes its caption before any caller gets a result
  (what the encoder did before captions became scheduled work);
- ``scheduled``: the batch returns; the caption is made one step at a time between later batches
  (``EncoderScheduler(background=StreamHub.caption_step)``; the encoder now steps captions in turn with
  frame readings, ``StreamHub.background_step``, and this bench measures the captions alone).

Reported per mode: the other streams' append latency (submit -> result) p50 / p99 / max, scenes
closed, captions stored. Random weights built from configs (real compute of the architecture).

    python bench/caption_pause.py [--model tiny-random-llava-onevision] [--streams 4] [--rounds 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time
import uuid
from pathlib import Path

import torch

from scenekv.memory import MemoryStore, RollingConfig
from scenekv.vlm import load_backend
from scenekv.workers.encoder_scheduler import EncoderScheduler
from scenekv.workers.stream_hub import StreamHub


def _frames(n_streams: int, rounds: int, scene_frames: int, size: tuple[int, int]) -> list[list]:
    """Stream 0: a synthetic video (world/cut_video.py) cut every ``scene_frames`` s, sampled at
    1 fps; the others: one still frame of it each, so only stream 0 closes scenes."""
    import tempfile

    from scenekv.ingest import open_source
    from scenekv.world.cut_video import make_video

    h, w = size
    cuts = [t + 0.5 for t in range(scene_frames, rounds, scene_frames)]
    with tempfile.TemporaryDirectory() as d:
        path = make_video(Path(d) / "cuts.mp4", duration=rounds, fps=2, size=(w, h), cuts=cuts)
        with open_source(path, fps=1.0) as src:
            video = [(f.pts, f.image) for f in src][:rounds]
    out = [video]
    out += [
        [(pts, video[(i * scene_frames) % len(video)][1]) for pts, _ in video] for i in range(1, n_streams)
    ]
    return out


def run_mode(mode: str, backend, store, frames: list[list], caption_tokens: int) -> dict:
    hub = StreamHub(
        backend,
        store,
        rolling=RollingConfig(window=16, chunk_frames=4),
        caption_tokens=caption_tokens,
    )
    lock = threading.Lock()

    def inline(batch):
        with lock:
            out = hub.append_batch(batch)
            t = time.perf_counter()
            if hub.captions_due.jobs:
                while (wait := hub.caption_step()) is not None:  # the captions, before any result
                    time.sleep(wait)
                step_s.append(time.perf_counter() - t)
            return out

    step_s: list[float] = []

    def step():
        with lock:
            t = time.perf_counter()
            wait = hub.caption_step()
            if wait is not None:
                step_s.append(time.perf_counter() - t)
            return wait

    batcher = (
        EncoderScheduler(inline) if mode == "inline" else EncoderScheduler(hub.append_batch, background=step)
    )
    sids = [hub.open(carriers="pool:16")["stream_id"] for _ in frames]
    latencies: dict[int, list[float]] = {i: [] for i in range(len(frames))}
    closed = [0]
    warm = 4  # the first rounds load kernels

    def push(i: int) -> None:
        for r, frame in enumerate(frames[i]):
            t0 = time.perf_counter()
            out = batcher.submit(sids[i], [frame])
            if r >= warm:
                latencies[i].append(time.perf_counter() - t0)
            if i == 0:
                closed[0] += len(out["closed"])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=push, args=(i,)) for i in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while True:  # what is still due after the last frame (scheduled mode)
        with lock:
            wait = hub.caption_step()
        if wait is None:
            break
        time.sleep(wait)
    wall = time.perf_counter() - t0
    batcher.close()
    made = sum(bool(s.caption) for s in store.scenes(sids[0]))
    for sid in sids:
        hub.end(sid)
    others = sorted(x for i in range(1, len(frames)) for x in latencies[i])
    q = statistics.quantiles(others, n=100)
    return {
        "mode": mode,
        "scenes closed": closed[0],
        "captions stored": made,
        "others' append p50 ms": round(1000 * statistics.median(others), 1),
        "p99 ms": round(1000 * q[98], 1),
        "max ms": round(1000 * others[-1], 1),
        "longest caption work in one go ms": round(1000 * max(step_s, default=0.0), 1),
        "wall s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-random-llava-onevision")
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--scene-frames", type=int, default=8)
    ap.add_argument("--caption-tokens", type=int, default=32)
    ap.add_argument("--size", default="360x640", help="frame height x width")
    ap.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()
    torch.manual_seed(0)
    h, w = (int(v) for v in args.size.split("x"))
    backend = load_backend(args.model, dtype="fp32")
    frames = _frames(args.streams, args.rounds, args.scene_frames, (h, w))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
        f"model {args.model}; {args.streams} streams x {args.rounds} frames ({h}x{w}), "
        f"a scene every {args.scene_frames} frames on stream 0, captions of {args.caption_tokens} tokens"
    )
    for i, mode in enumerate(("inline", "scheduled")):
        prefix = f"skvbench:{uuid.uuid4().hex[:8]}:"
        store = MemoryStore(args.redis, prefix)
        try:
            row = run_mode(mode, backend, store, frames, args.caption_tokens)
        finally:
            for key in store.client.scan_iter(match=prefix + "*", count=1000):
                store.client.delete(key)
        if i == 0:
            print("| " + " | ".join(row) + " |")
            print("|" + "---|" * len(row))
        print("| " + " | ".join(str(v) for v in row.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
