"""Ingest throughput for N concurrent push streams: one vision batch across streams vs one stream at a time.

Each round every stream gets one new frame (a push client at 1 fps). "one at a time" appends each
stream's frame in its own call (what the encoder did before it batched frames); "batched" runs the
round through ``StreamHub.append_batch`` (what the ``EncoderScheduler`` gives concurrent clients: one
vision forward for every stream's frame, then each stream's own prefill). Both write to the real
Redis through each stream's RollingMemory. Captions are off (a caption is a decode, not ingest).
Random weights built from configs: the compute is the real model's.

    python bench/throughput.py [--model tiny-random-llava-onevision,random-llava-onevision-qwen2-0.5b]
                               [--streams 1,4,16] [--rounds 4] [--dtype fp32]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import uuid

import numpy as np
import torch

from scenekv.memory import MemoryStore, RollingConfig
from scenekv.vlm import load_backend
from scenekv.workers.stream_hub import StreamHub


def _round_frames(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(n)]


def measure(model: str, streams: list[int], rounds: int, dtype: str | None, redis_url: str) -> list[dict]:
    backend = load_backend(model, dtype=dtype)
    store = MemoryStore(redis_url, f"skvbench:{uuid.uuid4().hex[:8]}:")
    rng = np.random.default_rng(0)
    rows = []
    try:
        for n in streams:
            per_mode = {}
            for mode in ("one at a time", "batched"):
                hub = StreamHub(
                    backend, store, rolling=RollingConfig(window=16, chunk_frames=8), captions=False
                )
                sids = [hub.open(carriers="pool:16")["stream_id"] for _ in range(n)]
                times = []
                for r in range(rounds + 1):  # the first round warms up
                    frames = _round_frames(n, rng)
                    t0 = time.perf_counter()
                    if mode == "batched":
                        out = hub.append_batch(
                            [(sid, [(float(r), f)]) for sid, f in zip(sids, frames, strict=True)]
                        )
                        bad = [o for o in out if isinstance(o, Exception)]
                        if bad:
                            raise bad[0]
                    else:
                        for sid, f in zip(sids, frames, strict=True):
                            hub.append(sid, [(float(r), f)])
                    if r:
                        times.append(time.perf_counter() - t0)
                hub.close()  # flushes and detaches every stream
                for sid in sids:
                    store.delete_stream(sid)
                per_mode[mode] = statistics.median(times)
            one, batched = per_mode["one at a time"], per_mode["batched"]
            rows.append(
                {
                    "model": model,
                    "streams": n,
                    "one_at_a_time_fps": n / one,
                    "batched_fps": n / batched,
                    "ratio": one / batched,
                }
            )
            print(
                f"{model}  {n:>3} streams  one at a time {n / one:7.2f} frames/s  batched {n / batched:7.2f}"
                f" frames/s  ratio {one / batched:.2f}x",
                flush=True,
            )
    finally:
        store.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-random-llava-onevision,random-llava-onevision-qwen2-0.5b")
    ap.add_argument("--streams", default="1,4,16")
    ap.add_argument("--rounds", type=int, default=4, help="timed rounds per setting (median)")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {torch.get_num_threads()} torch threads, {args.dtype}")
    streams = [int(s) for s in args.streams.split(",")]
    rows = []
    for model in args.model.split(","):
        rows += measure(model.strip(), streams, args.rounds, args.dtype, args.redis_url)
    print("\n| model | streams | one at a time (frames/s) | batched (frames/s) | batched / one at a time |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['streams']} | {r['one_at_a_time_fps']:.2f} | {r['batched_fps']:.2f} |"
            f" {r['ratio']:.2f}x |"
        )


if __name__ == "__main__":
    main()
