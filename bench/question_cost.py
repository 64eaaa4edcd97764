"""What a question costs as a stream grows: bytes read from Redis and time to first token.

Streams of 1 h, 6 h and 24 h at 1 fps (8-frame chunks of ``pool:16``-sized segments, 24 tokens a
frame, int8 at rest, a scene every 30 s) are written straight into a private Redis as real chunk
blobs and retrieval keys of the model's KV geometry; then questions go through the real QA path
(``MemoryView`` + ``QAEngine``: index, retrieval scores, chunk loads, re-rotation, prefill, first
token). Bytes read are Redis's own count (``INFO stats`` ``total_net_output_bytes``) around each
question; the first question of a stream warms the retrieval index and is reported apart.

The KV is random (what is measured is cost, not answers), and the model is the tiny architecture
by default so that 24 h of chunks fit in a few hundred MB: the *ratios* between stream lengths are
what the geometry does not change (a chunk's retrieval keys are one token's worth of its KV).

    python bench/question_cost.py [--model tiny-random-llava-onevision] [--hours 1,6,24] [--questions 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import redis
import torch

from scenekv.memory import MemoryStore, chunk_keys, encode_chunk
from scenekv.memory.local_redis import LocalRedis
from scenekv.qa.engine import QAEngine
from scenekv.qa.key_index import KeyIndex
from scenekv.qa.memory_view import MemoryView
from scenekv.units import clock
from scenekv.vlm import FrameSpan, KVChunk, SamplingParams, load_backend

TOKENS_PER_FRAME = 24
FRAMES_PER_CHUNK = 8
SCENE_S = 30


def fill(store: MemoryStore, backend, hours: float) -> str:
    """A stream of ``hours`` at 1 fps written as chunks (no model run: random KV of its geometry)."""
    geo = backend.geometry
    sid = store.create_stream(source="bench", model=backend.model_id, carriers="pool:16")
    g = torch.Generator().manual_seed(0)
    frames = int(hours * 3600)
    tokens = TOKENS_PER_FRAME * FRAMES_PER_CHUNK
    for first in range(0, frames, FRAMES_PER_CHUNK):
        scene = first // SCENE_S
        if first % SCENE_S < FRAMES_PER_CHUNK:
            store.put_scene(sid, scene, float(first), {"closed": 1, "end": float(first + SCENE_S)})
        shape = (geo.layers, geo.kv_heads, tokens, geo.head_dim)
        keys = torch.randn(shape, generator=g)
        spans = [
            FrameSpan(first + i, float(first + i), i * TOKENS_PER_FRAME, TOKENS_PER_FRAME)
            for i in range(FRAMES_PER_CHUNK)
        ]
        chunk = KVChunk(
            keys, torch.randn(shape, generator=g), 20 + first * TOKENS_PER_FRAME, spans, backend.model_id
        )
        chunk.content_keys = keys.mean(dim=2)
        state = {
            "last_pts": float(first + FRAMES_PER_CHUNK - 1),
            "newest_pts": float(first + FRAMES_PER_CHUNK - 1),
        }
        store.write_chunk(
            sid, chunk, chunk_keys(chunk, None), scene=scene, state=state, blob=encode_chunk(chunk, "int8")
        )
    return sid


def sent(client: redis.Redis) -> int:
    return int(client.info("stats")["total_net_output_bytes"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-random-llava-onevision")
    ap.add_argument("--hours", default="1,6,24")
    ap.add_argument("--questions", type=int, default=5)
    args = ap.parse_args()
    backend = load_backend(args.model, dtype="fp32")
    engine = QAEngine(backend)
    server = LocalRedis(Path(tempfile.mkdtemp(prefix="scenekv-qcost-")))
    try:
        store = MemoryStore(server.url, "qcost:", ttl_s=None)
        client = redis.Redis.from_url(server.url)
        print(
            "| stream | chunks | Redis MB | first question: bytes read "
            "| later questions: bytes read (median) | later: TTFT ms (median) "
            "| without the kept index: bytes read (median) | without: TTFT ms (median) |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for hours in (float(h) for h in args.hours.split(",")):
            t = time.perf_counter()
            sid = fill(store, backend, hours)
            fill_s = time.perf_counter() - t
            info = store.info(sid)
            index = KeyIndex()
            runs = {}
            for kept in (True, False):
                reads, ttfts = [], []
                for q in range(args.questions + 1):
                    at = (q + 1) * hours * 3600 / (args.questions + 2)
                    before = sent(client)
                    memory = MemoryView(store, sid, index=index if kept else None)
                    params = SamplingParams(max_new_tokens=4)
                    answer = engine.ask(memory, f"What happened at {clock(at)}?", params=params)
                    list(answer)
                    reads.append(sent(client) - before)
                    ttfts.append(answer.ttft_ms or 0.0)
                runs[kept] = reads, ttfts
            (reads, ttfts), (plain, plain_ttft) = runs[True], runs[False]
            med = statistics.median
            print(
                f"| {hours:g} h | {info.chunks} | {info.bytes / 1e6:.0f} | {reads[0] / 1e6:.2f} MB "
                f"| {med(reads[1:]) / 1e6:.3f} MB | {med(ttfts[1:]):.0f} "
                f"| {med(plain[1:]) / 1e6:.2f} MB | {med(plain_ttft[1:]):.0f} |",
                flush=True,
            )
            print(f"  (written in {fill_s:.0f} s; index stats {index.stats})", flush=True)
            store.delete_stream(sid)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
